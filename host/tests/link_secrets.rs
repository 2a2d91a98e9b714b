//! No secret reaches the logs, even at `RUST_LOG=trace`: `gateway-host serve` runs as a
//! real process against the real simulator with every log target at trace, links up
//! (the upgrade request that tungstenite traces carries the link token), serves an
//! authenticated request, and its whole output must not contain the link token, the JWT
//! secret, the admin token or the caller's token.

use std::io::Read;
use std::net::TcpListener;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use gateway_sim::{SimConfig, Simulator};

const BIN: &str = env!("CARGO_BIN_EXE_gateway-host");
const LINK_TOKEN: &str = "link-token-9f3a1c77e2b54d08";
const JWT_SECRET: &str = "jwt-secret-5b0e8d2f41c97a36aa0e8d2f41c97a36";
const ADMIN_TOKEN: &str = "admin-token-c41d7e9a03b6f258";
const QUIET_COMPILER: &str = "trace,cranelift_codegen=info,cranelift_frontend=info,wasmtime_internal_cranelift=info,regalloc2=info";

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or_else(|e| panic!("no free port: {e}"))
}

fn get(url: &str, bearer: Option<&str>) -> Option<u16> {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(5)))
        .build()
        .into();
    let mut req = agent.get(url);
    if let Some(token) = bearer {
        req = req.header("Authorization", &format!("Bearer {token}"));
    }
    req.call().ok().map(|r| r.status().as_u16())
}

#[test]
fn no_secret_is_logged_at_trace_level() {
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let sim = runtime
        .block_on(Simulator::start(SimConfig::new(LINK_TOKEN)))
        .expect("sim starts");
    let (http, admin) = (free_port(), free_port());
    let mut child = Command::new(BIN)
        .arg("serve")
        // Everything at trace except the compiler's own passes (millions of lines per
        // component, no secrets; they only make the test slow).
        .env("RUST_LOG", QUIET_COMPILER)
        .env("LINK_URL", sim.url())
        .env("LINK_TOKEN", LINK_TOKEN)
        .env("GATEWAY_HTTP_ADDR", format!("127.0.0.1:{http}"))
        .env("GATEWAY_ADMIN_ADDR", format!("127.0.0.1:{admin}"))
        .env("GATEWAY_ADMIN_TOKEN", ADMIN_TOKEN)
        .env("GATEWAY_JWT_SECRET", JWT_SECRET)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    // Drain both pipes on threads: trace output is large and must not block the host.
    let mut out = child.stdout.take().expect("stdout");
    let mut err = child.stderr.take().expect("stderr");
    let out_reader = std::thread::spawn(move || {
        let mut s = Vec::new();
        let _ = out.read_to_end(&mut s);
        s
    });
    let err_reader = std::thread::spawn(move || {
        let mut s = Vec::new();
        let _ = err.read_to_end(&mut s);
        s
    });

    let deadline = Instant::now() + Duration::from_secs(60);
    while get(&format!("http://127.0.0.1:{http}/readyz"), None) != Some(200) {
        assert!(Instant::now() < deadline, "host never became ready");
        std::thread::sleep(Duration::from_millis(50));
    }
    let caller = Command::new(BIN)
        .args(["token", "--sub", "42", "--topics", "guild:*"])
        .env("GATEWAY_JWT_SECRET", JWT_SECRET)
        .output()
        .expect("token");
    let caller = String::from_utf8_lossy(&caller.stdout).trim().to_string();
    assert!(caller.len() > 20, "a caller token was minted");
    // Authenticated requests on both listeners (their headers must not be traced either).
    assert_eq!(
        get(
            &format!("http://127.0.0.1:{http}/api/commands/nope"),
            Some(&caller)
        )
        .map(|s| s != 401),
        Some(true)
    );
    assert_eq!(
        get(
            &format!("http://127.0.0.1:{admin}/admin/components"),
            Some(ADMIN_TOKEN)
        ),
        Some(200)
    );
    runtime.block_on(async {
        sim.control().emit(5);
        tokio::time::sleep(Duration::from_millis(300)).await;
    });

    let pid = child.id().to_string();
    let _ = Command::new("kill").args(["-TERM", &pid]).status();
    let deadline = Instant::now() + Duration::from_secs(30);
    while child.try_wait().ok().flatten().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.wait();
    let mut logs = out_reader.join().unwrap_or_default();
    logs.extend(err_reader.join().unwrap_or_default());
    let logs = String::from_utf8_lossy(&logs);
    assert!(
        logs.contains("TRACE"),
        "the host really logged at trace level"
    );
    assert!(
        logs.contains("link connected"),
        "the link came up during the run"
    );
    for (name, secret) in [
        ("LINK_TOKEN", LINK_TOKEN),
        ("GATEWAY_JWT_SECRET", JWT_SECRET),
        ("GATEWAY_ADMIN_TOKEN", ADMIN_TOKEN),
        ("the caller token", caller.as_str()),
    ] {
        assert!(!logs.contains(secret), "{name} appears in the trace logs");
    }
    runtime.block_on(sim.shutdown());
}
