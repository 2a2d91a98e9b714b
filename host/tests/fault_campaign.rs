//! Fault campaign against the real binaries: a `gateway-sim` process emitting a few
//! hundred events per second, a `gateway-host serve` process linked to it, and one SSE
//! client on `/api/stream` that resumes with `Last-Event-ID` whenever its stream ends.
//!
//! Ten rounds alternate a SIGKILL + restart of the simulator (an upstream crash: its
//! buffer and session are gone) and a SIGSTOP/SIGCONT long enough to trip the host's
//! zombie detection (a stalled upstream whose buffer survives). After every round,
//! delivery must continue; over the whole run the host ids the client saw must have no
//! gap and no repeat; and every upstream loss (each SIGKILL) must reach the client as a
//! `reset` event.
//!
//! The `gateway-sim` binary is taken from the same target directory as `gateway-host`
//! (built by `cargo build -p gateway-sim` when missing).

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const HOST_BIN: &str = env!("CARGO_BIN_EXE_gateway-host");
const TOKEN: &str = "campaign-link-token";
const JWT_SECRET: &str = "campaign-jwt-secret-0123456789abcdef0123456789";
const ROUNDS: usize = 10;
/// Host link timing for the campaign: ping every 200 ms, dead after 600 ms without pong.
const PING_MS: u64 = 200;
const PONG_TIMEOUT_MS: u64 = 600;
/// How long a SIGSTOP lasts: well past the zombie bound (800 ms).
const STOP_FOR: Duration = Duration::from_millis(2_000);
/// Events the client must see after a round before the next one starts.
const AFTER_ROUND: usize = 30;
const ROUND_DEADLINE: Duration = Duration::from_secs(15);

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or_else(|e| panic!("no free port: {e}"))
}

/// The `gateway-sim` binary next to `gateway-host`, built if absent.
fn sim_binary() -> PathBuf {
    let host = PathBuf::from(HOST_BIN);
    let sim = host.with_file_name("gateway-sim");
    if !sim.exists() {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let status = Command::new(cargo)
            .args(["build", "-p", "gateway-sim", "--bin", "gateway-sim"])
            .status()
            .expect("run cargo build");
        assert!(status.success(), "building gateway-sim failed");
    }
    sim
}

struct Sim {
    bin: PathBuf,
    port: u16,
    child: Option<Child>,
}

impl Sim {
    fn start(bin: PathBuf, port: u16) -> Sim {
        let mut sim = Sim {
            bin,
            port,
            child: None,
        };
        sim.spawn();
        sim
    }

    fn spawn(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let mut child = Command::new(&self.bin)
                .args(["--listen", &format!("127.0.0.1:{}", self.port)])
                .args([
                    "--rate",
                    "300",
                    "--seed",
                    "7",
                    "--replay-capacity",
                    "100000",
                ])
                .env("LINK_TOKEN", TOKEN)
                .env("RUST_LOG", "warn")
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("spawn gateway-sim");
            // Listening? (a just-killed sim's port can take a moment to free up.)
            let up = wait(Duration::from_secs(3), || {
                TcpStream::connect(("127.0.0.1", self.port)).is_ok()
                    || child.try_wait().ok().flatten().is_some()
            });
            if up && child.try_wait().ok().flatten().is_none() {
                self.child = Some(child);
                return;
            }
            let _ = child.kill();
            let _ = child.wait();
            assert!(Instant::now() < deadline, "gateway-sim would not start");
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn signal(&self, sig: &str) {
        if let Some(child) = &self.child {
            let pid = child.id().to_string();
            let ok = Command::new("kill")
                .args([sig, &pid])
                .status()
                .map(|s| s.success());
            assert_eq!(ok.ok(), Some(true), "kill {sig} {pid}");
        }
    }

    fn kill_and_restart(&mut self) {
        self.signal("-KILL");
        if let Some(mut child) = self.child.take() {
            let _ = child.wait();
        }
        self.spawn();
    }
}

impl Drop for Sim {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = Command::new("kill")
                .args(["-CONT", &child.id().to_string()])
                .status();
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

struct Host(Child);

impl Drop for Host {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn wait(within: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + within;
    while !cond() {
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    true
}

/// One SSE frame the client received.
#[derive(Debug, Clone)]
struct Frame {
    id: Option<String>,
    event: String,
}

/// What the client saw, shared with the test.
#[derive(Default)]
struct Seen {
    frames: Vec<Frame>,
    connects: usize,
}

/// The SSE client: reads `/api/stream`, reconnecting with `Last-Event-ID` when it ends.
fn run_client(port: u16, token: String, seen: Arc<Mutex<Seen>>, stop: Arc<AtomicBool>) {
    let mut last_id: Option<String> = None;
    while !stop.load(Ordering::Relaxed) {
        let Ok(mut stream) = TcpStream::connect(("127.0.0.1", port)) else {
            std::thread::sleep(Duration::from_millis(50));
            continue;
        };
        let _ = stream.set_read_timeout(Some(Duration::from_millis(500)));
        let resume = last_id
            .as_ref()
            .map(|id| format!("Last-Event-ID: {id}\r\n"))
            .unwrap_or_default();
        let request = format!(
            "GET /api/stream HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\n{resume}\r\n"
        );
        if stream.write_all(request.as_bytes()).is_err() {
            continue;
        }
        if let Ok(mut s) = seen.lock() {
            s.connects += 1;
        }
        read_stream(stream, &seen, &stop, &mut last_id);
    }
}

fn read_stream(
    stream: TcpStream,
    seen: &Mutex<Seen>,
    stop: &AtomicBool,
    last_id: &mut Option<String>,
) {
    let mut reader = BufReader::new(stream);
    let (mut id, mut event) = (None::<String>, String::new());
    let mut line = String::new();
    while !stop.load(Ordering::Relaxed) {
        line.clear();
        match reader.read_line(&mut line) {
            Ok(0) => return,
            Ok(_) => {}
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                continue;
            }
            Err(_) => return,
        }
        let l = line.trim_end_matches(['\r', '\n']);
        if let Some(v) = l.strip_prefix("id: ") {
            id = Some(v.to_string());
        } else if let Some(v) = l.strip_prefix("event: ") {
            event = v.to_string();
        } else if l.is_empty() && (id.is_some() || !event.is_empty()) {
            if id.is_some() {
                *last_id = id.clone();
            }
            let frame = Frame {
                id: id.take(),
                event: std::mem::take(&mut event),
            };
            if let Ok(mut s) = seen.lock() {
                s.frames.push(frame);
            }
        }
    }
}

fn event_count(seen: &Mutex<Seen>) -> usize {
    seen.lock()
        .map(|s| {
            s.frames
                .iter()
                .filter(|f| f.event != "reset" && f.id.is_some())
                .count()
        })
        .unwrap_or(0)
}

/// One counter from the host's `/metrics`.
fn metric(port: u16, name: &str) -> f64 {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_global(Some(Duration::from_secs(5)))
        .build()
        .into();
    let text = agent
        .get(&format!("http://127.0.0.1:{port}/metrics"))
        .call()
        .ok()
        .and_then(|mut r| r.body_mut().read_to_string().ok())
        .unwrap_or_default();
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.trim().parse().ok())
        .unwrap_or(0.0)
}

/// `<epoch>-<seq>` → (epoch, seq).
fn parse_id(id: &str) -> Option<(u64, u64)> {
    let (epoch, seq) = id.split_once('-')?;
    Some((epoch.parse().ok()?, seq.parse().ok()?))
}

#[test]
fn delivery_survives_upstream_crashes_and_stalls() {
    let started = Instant::now();
    let (link_port, http, admin) = (free_port(), free_port(), free_port());
    let mut sim = Sim::start(sim_binary(), link_port);
    let host = Host(
        Command::new(HOST_BIN)
            .arg("serve")
            .env("LINK_URL", format!("ws://127.0.0.1:{link_port}/link"))
            .env("LINK_TOKEN", TOKEN)
            .env("GATEWAY_HTTP_ADDR", format!("127.0.0.1:{http}"))
            .env("GATEWAY_ADMIN_ADDR", format!("127.0.0.1:{admin}"))
            .env("GATEWAY_JWT_SECRET", JWT_SECRET)
            .env("GATEWAY_LINK_PING_INTERVAL_MS", PING_MS.to_string())
            .env("GATEWAY_LINK_PONG_TIMEOUT_MS", PONG_TIMEOUT_MS.to_string())
            .env("GATEWAY_LINK_BACKOFF_BASE_MS", "50")
            .env("GATEWAY_LINK_BACKOFF_CAP_MS", "500")
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn gateway-host"),
    );
    let token = Command::new(HOST_BIN)
        .args(["token", "--sub", "42", "--topics", "*"])
        .env("GATEWAY_JWT_SECRET", JWT_SECRET)
        .output()
        .expect("token");
    let token = String::from_utf8_lossy(&token.stdout).trim().to_string();
    assert!(
        wait(Duration::from_secs(30), || {
            TcpStream::connect(("127.0.0.1", http)).is_ok()
        }),
        "host never listened"
    );

    let seen = Arc::new(Mutex::new(Seen::default()));
    let stop = Arc::new(AtomicBool::new(false));
    let client = {
        let (seen, stop) = (seen.clone(), stop.clone());
        std::thread::spawn(move || run_client(http, token, seen, stop))
    };
    assert!(
        wait(ROUND_DEADLINE, || event_count(&seen) >= AFTER_ROUND),
        "no events before the campaign"
    );

    let mut kills = 0;
    for round in 0..ROUNDS {
        if round % 2 == 0 {
            sim.kill_and_restart();
            kills += 1;
        } else {
            sim.signal("-STOP");
            std::thread::sleep(STOP_FOR);
            sim.signal("-CONT");
        }
        let before = event_count(&seen);
        assert!(
            wait(ROUND_DEADLINE, || event_count(&seen)
                >= before + AFTER_ROUND),
            "round {round}: delivery did not continue ({} events before, {} now)",
            before,
            event_count(&seen)
        );
    }
    stop.store(true, Ordering::Relaxed);
    let _ = client.join();
    let reconnects = metric(http, "gateway_link_reconnects_total");
    assert!(
        reconnects >= ROUNDS as f64,
        "every round cost the host its link (crash or zombie): {reconnects} reconnects"
    );
    drop(host);

    let seen = seen.lock().map(|s| s.frames.clone()).unwrap_or_default();
    let ids: Vec<(u64, u64)> = seen
        .iter()
        .filter_map(|f| f.id.as_deref().and_then(parse_id))
        .collect();
    assert!(ids.len() > ROUNDS * AFTER_ROUND, "{} ids", ids.len());
    for pair in ids.windows(2) {
        let ((e0, s0), (e1, s1)) = (pair[0], pair[1]);
        assert_eq!(e0, e1, "one host process, one epoch");
        assert_eq!(
            s1,
            s0 + 1,
            "host ids have no gap and no repeat: {s0} then {s1}"
        );
    }
    let resets = seen.iter().filter(|f| f.event == "reset").count();
    assert!(
        resets >= kills,
        "every upstream loss reaches the client as a reset: {kills} SIGKILLs, {resets} resets"
    );
    assert!(
        started.elapsed() < Duration::from_secs(120),
        "campaign took {:?}",
        started.elapsed()
    );
}
