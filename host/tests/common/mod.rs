//! `gateway-host serve` child processes for tests (restarts, whole-output checks): started on free
//! loopback ports with the caller's upstream environment, stopped with SIGTERM (and killed
//! if a test ends early), observed through its own HTTP routes.

// Each test binary uses its part of this module.
#![allow(dead_code)]

use std::io::Read;
use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_gateway-host");
const JWT_SECRET: &str = "state-file-jwt-secret-0123456789abcdef012345";

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or_else(|e| panic!("no free port: {e}"))
}

fn get(url: &str) -> Option<(u16, String)> {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(5)))
        .build()
        .into();
    let mut r = agent.get(url).call().ok()?;
    Some((r.status().as_u16(), r.body_mut().read_to_string().ok()?))
}

/// Sum of the series of `name` in a Prometheus text.
pub fn total(metrics: &str, name: &str) -> f64 {
    metrics
        .lines()
        .filter(|l| l.starts_with(name) && !l.starts_with('#'))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

pub fn wait(within: Duration, what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + within;
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

pub struct Host {
    child: Child,
    http: u16,
}

impl Host {
    /// `gateway-host serve` with the upstream environment `env` (and `LINK_URL` unset
    /// unless `env` sets it), on free loopback ports; returns once `/readyz` says 200.
    pub fn start(env: &[(&str, &str)]) -> Host {
        let (http, admin) = (free_port(), free_port());
        let mut command = Command::new(BIN);
        command.arg("serve").env_remove("LINK_URL");
        for (key, value) in env {
            command.env(key, value);
        }
        let child = command
            .env("GATEWAY_HTTP_ADDR", format!("127.0.0.1:{http}"))
            .env("GATEWAY_ADMIN_ADDR", format!("127.0.0.1:{admin}"))
            .env("GATEWAY_JWT_SECRET", JWT_SECRET)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn gateway-host");
        let host = Host { child, http };
        wait(Duration::from_secs(30), "the host to become ready", || {
            matches!(host.get("/readyz"), Some((200, _)))
        });
        host
    }

    pub fn get(&self, path: &str) -> Option<(u16, String)> {
        get(&format!("http://127.0.0.1:{}{path}", self.http))
    }

    pub fn events_in(&self) -> f64 {
        self.get("/metrics")
            .map(|(_, m)| total(&m, "gateway_events_in_total"))
            .unwrap_or(0.0)
    }

    pub fn stop(mut self) {
        let pid = self.child.id().to_string();
        let _ = Command::new("kill").args(["-TERM", &pid]).status();
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                assert!(status.success(), "host exit status {status}");
                return;
            }
            assert!(Instant::now() < deadline, "host did not stop on SIGTERM");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Host {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Everything at trace except the compiler's own passes (millions of lines per component,
/// no secrets; they only make a test slow).
const QUIET_COMPILER: &str = "trace,cranelift_codegen=info,cranelift_frontend=info,wasmtime_internal_cranelift=info,regalloc2=info";

/// A `gateway-host serve` child logging at trace, for tests that read its whole output.
/// Both pipes are drained on threads: trace output is large and must not block the host.
pub struct TracedHost {
    child: Child,
    readers: Vec<std::thread::JoinHandle<Vec<u8>>>,
    pub http: u16,
    pub admin: u16,
}

impl TracedHost {
    /// Starts `serve` with `env` (upstream, secrets; `LINK_URL` and `LINK_TOKEN` unset
    /// unless `env` sets them) on free loopback ports; returns once `/readyz` says 200.
    pub fn start(env: &[(&str, &str)]) -> TracedHost {
        let (http, admin) = (free_port(), free_port());
        let mut command = Command::new(BIN);
        command
            .arg("serve")
            .env_remove("LINK_URL")
            .env_remove("LINK_TOKEN")
            .env("RUST_LOG", QUIET_COMPILER)
            .env("GATEWAY_HTTP_ADDR", format!("127.0.0.1:{http}"))
            .env("GATEWAY_ADMIN_ADDR", format!("127.0.0.1:{admin}"));
        for (key, value) in env {
            command.env(key, value);
        }
        let mut child = command
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn gateway-host");
        let mut readers = Vec::new();
        let pipes: [Box<dyn std::io::Read + Send>; 2] = [
            Box::new(child.stdout.take().expect("stdout")),
            Box::new(child.stderr.take().expect("stderr")),
        ];
        for mut pipe in pipes {
            readers.push(std::thread::spawn(move || {
                let mut s = Vec::new();
                let _ = pipe.read_to_end(&mut s);
                s
            }));
        }
        let host = TracedHost {
            child,
            readers,
            http,
            admin,
        };
        wait(Duration::from_secs(60), "the host to become ready", || {
            matches!(
                get(&format!("http://127.0.0.1:{http}/readyz")),
                Some((200, _))
            )
        });
        host
    }

    /// SIGTERM (a kill after 30 s), then everything the host wrote to stdout and stderr.
    pub fn stop(mut self) -> String {
        let pid = self.child.id().to_string();
        let _ = Command::new("kill").args(["-TERM", &pid]).status();
        let deadline = Instant::now() + Duration::from_secs(30);
        while self.child.try_wait().ok().flatten().is_none() {
            if Instant::now() > deadline {
                let _ = self.child.kill();
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.wait();
        let mut logs = Vec::new();
        for reader in std::mem::take(&mut self.readers) {
            logs.extend(reader.join().unwrap_or_default());
        }
        String::from_utf8_lossy(&logs).into_owned()
    }
}

impl Drop for TracedHost {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
