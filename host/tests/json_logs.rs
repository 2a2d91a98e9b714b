//! JSON logs in the `LogRecord` shape, from the real binary: the records of a delivered
//! command and of the upstream event that follows it (its echo, which carries the same
//! traceId) have `traceId`, `event`, `level` and `metadata` at the top level, and the
//! event's received, routed and delivered records share the upstream event's traceId.

use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use gateway_sim::{SimConfig, Simulator};
use serde_json::{Value, json};

const BIN: &str = env!("CARGO_BIN_EXE_gateway-host");
const SECRET: &str = "json-logs-test-secret-of-32-bytes-or-more";

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port()
}

struct Host {
    child: Child,
    lines: Arc<Mutex<Vec<String>>>,
}

impl Drop for Host {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Host {
    /// The parsed JSON records logged so far (every stderr line must be one).
    fn records(&self) -> Vec<Value> {
        let lines = self.lines.lock().expect("lines").clone();
        lines
            .iter()
            .map(|l| {
                serde_json::from_str(l).unwrap_or_else(|e| panic!("not a JSON record ({e}): {l}"))
            })
            .collect()
    }

    fn wait_for(&self, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(r) = self.records().into_iter().find(|r| pred(r)) {
                return r;
            }
            assert!(
                Instant::now() < deadline,
                "no {what} record; got:\n{:#?}",
                self.records()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

#[test]
fn command_and_event_records_carry_top_level_trace_ids() {
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let sim = runtime
        .block_on(Simulator::start(SimConfig::new("json-logs-link-token")))
        .expect("sim starts");
    let http = free_port();
    let mut child = Command::new(BIN)
        .arg("serve")
        .env("GATEWAY_LOG_FORMAT", "json")
        .env(
            "RUST_LOG",
            "info,gateway_host::sse=debug,gateway_host::link=debug",
        )
        .env("LINK_URL", sim.url())
        .env("LINK_TOKEN", "json-logs-link-token")
        .env("GATEWAY_HTTP_ADDR", format!("127.0.0.1:{http}"))
        .env("GATEWAY_ADMIN_ADDR", format!("127.0.0.1:{}", free_port()))
        .env("GATEWAY_JWT_SECRET", SECRET)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let stderr = child.stderr.take().expect("stderr");
    let lines = Arc::new(Mutex::new(Vec::new()));
    let sink = lines.clone();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            sink.lock().expect("lines").push(line);
        }
    });
    let host = Host { child, lines };
    host.wait_for("link connected", |r| r["message"] == "link connected");

    let token = String::from_utf8(
        Command::new(BIN)
            .args(["token", "--sub", "42"])
            .env("GATEWAY_JWT_SECRET", SECRET)
            .output()
            .expect("token")
            .stdout,
    )
    .expect("utf8");
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .into();
    let mut reply = agent
        .post(&format!(
            "http://127.0.0.1:{http}/api/commands/send-message"
        ))
        .header("Authorization", &format!("Bearer {}", token.trim()))
        .header("Content-Type", "application/json")
        .send(json!({"channelId": "1051475102924931080", "content": "log me"}).to_string())
        .expect("post");
    assert_eq!(reply.status().as_u16(), 200);
    let body: Value =
        serde_json::from_str(&reply.body_mut().read_to_string().expect("body")).expect("json");
    let trace_id = body["traceId"].as_str().expect("traceId").to_string();

    let delivered = host.wait_for("command.delivered", |r| {
        r["event"] == "command.delivered" && r["traceId"] == trace_id.as_str()
    });
    assert_eq!(delivered["level"], "info");
    assert!(
        delivered["latencyMs"].as_f64().is_some_and(|ms| ms >= 0.0),
        "{delivered}"
    );
    assert!(delivered["metadata"].is_object(), "{delivered}");
    assert!(delivered["timestamp"].is_string());

    // The echo of the sent message is an upstream event with the command's traceId: its
    // received, routed and delivered records all carry it at the top level.
    for stage in ["event.received", "event.routed", "event.delivered"] {
        let record = host.wait_for(stage, |r| {
            r["event"] == stage && r["traceId"] == trace_id.as_str()
        });
        assert_eq!(record["level"], "debug", "{record}");
        assert!(record["metadata"].is_object(), "{record}");
    }
    let delivered_event = host.wait_for("event.delivered", |r| {
        r["event"] == "event.delivered" && r["traceId"] == trace_id.as_str()
    });
    assert!(
        delivered_event["latencyMs"].as_f64().is_some(),
        "{delivered_event}"
    );
    drop(host);
    runtime.block_on(sim.shutdown());
}
