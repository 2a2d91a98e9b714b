//! `gateway-host component test` as a real process: every default component passes the case
//! file it ships (`components/<slot>/cases.jsonl`); a case with a wrong expectation fails
//! with exit 1 and a `FAIL` line saying what was expected and what came back; a malformed
//! case file exits 2 naming the line, before any case runs.

use std::path::{Path, PathBuf};
use std::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_gateway-host");

/// The default components as embedded in the binary, with their case files.
fn defaults() -> [(&'static str, &'static str); 4] {
    [
        ("event-router", env!("GATEWAY_DEFAULT_EVENT_ROUTER_WASM")),
        ("rate-limiter", env!("GATEWAY_DEFAULT_RATE_LIMITER_WASM")),
        (
            "command-validator",
            env!("GATEWAY_DEFAULT_COMMAND_VALIDATOR_WASM"),
        ),
        ("voice-filter", env!("GATEWAY_DEFAULT_VOICE_FILTER_WASM")),
    ]
}

fn cases_of(slot: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../components")
        .join(slot)
        .join("cases.jsonl")
}

/// A host config with generous call deadlines: two cores run many tests at once, and a
/// call cut short by a busy machine is not what these tests are about.
fn relaxed_config() -> tempfile::NamedTempFile {
    let config = tempfile::NamedTempFile::new().expect("config file");
    std::fs::write(config.path(), "[policy.limits]\ncall-timeout-ms = 2000\n").expect("write");
    config
}

fn run(slot: &str, wasm: &str, cases: &Path) -> (i32, String, String) {
    run_with(slot, wasm, cases, &[])
}

fn run_with(slot: &str, wasm: &str, cases: &Path, extra: &[&str]) -> (i32, String, String) {
    let config = relaxed_config();
    let out = Command::new(BIN)
        .args(["component", "test", "--slot", slot, wasm, "--cases"])
        .arg(cases)
        .arg("--config")
        .arg(config.path())
        .args(extra)
        .output()
        .expect("run gateway-host");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Case lines (not comments or blank lines) of a case file.
fn case_lines(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .expect("case file")
        .lines()
        .filter(|l| !l.trim().is_empty() && !l.trim_start().starts_with('#'))
        .map(String::from)
        .collect()
}

#[test]
fn default_components_pass_their_case_files() {
    for (slot, wasm) in defaults() {
        let cases = cases_of(slot);
        let n = case_lines(&cases).len();
        assert!(n >= 4, "{slot}: at least a few cases, found {n}");
        let (code, stdout, stderr) = run(slot, wasm, &cases);
        assert_eq!(code, 0, "{slot}:\n{stdout}\n{stderr}");
        let oks = stdout.lines().filter(|l| l.starts_with("ok   ")).count();
        assert_eq!(oks, n, "{slot}: one ok line per case:\n{stdout}");
        assert!(
            stdout
                .trim_end()
                .ends_with(&format!("{n} passed, 0 failed")),
            "{slot}: summary:\n{stdout}"
        );
    }
}

#[test]
fn a_wrong_expectation_fails_with_exit_1() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cases = dir.path().join("cases.jsonl");
    std::fs::write(
        &cases,
        concat!(
            "# one right, two wrong\n",
            r#"{"name": "fresh bucket", "requests": [{"userId": "1", "channelId": "2", "nowMs": 0}], "expect": [{"allow": 9}]}"#,
            "\n",
            r#"{"name": "claims a burst of 2", "requests": [{"userId": "1", "channelId": "2", "nowMs": 0}, {"userId": "1", "channelId": "2", "nowMs": 0}, {"userId": "1", "channelId": "2", "nowMs": 0}], "expect": [{"allow": true}, {"allow": true}, {"deny": true}]}"#,
            "\n",
            r#"{"name": "wrong remaining", "requests": [{"userId": "1", "channelId": "2", "nowMs": 0}], "expect": [{"allow": 3}]}"#,
            "\n",
        ),
    )
    .expect("write");
    let (code, stdout, _) = run(
        "rate-limiter",
        env!("GATEWAY_DEFAULT_RATE_LIMITER_WASM"),
        &cases,
    );
    assert_eq!(code, 1, "{stdout}");
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines[0], "ok   fresh bucket", "{stdout}");
    assert_eq!(
        lines[1],
        "FAIL claims a burst of 2: request 3 (nowMs 0): expected deny, got allow (7 left)",
        "{stdout}"
    );
    assert_eq!(
        lines[2],
        "FAIL wrong remaining: request 1 (nowMs 0): expected allow (3 left), got allow (9 left)",
        "{stdout}"
    );
    assert_eq!(lines[3], "1 passed, 2 failed", "{stdout}");

    // The router: a topic it does not give, and a payload it does not write.
    std::fs::write(
        &cases,
        concat!(
            r#"{"name": "claims a user topic", "event": {"name": "MESSAGE_CREATE", "guildId": "1", "channelId": "2", "userId": "3"}, "expect": {"deliver": {"topics": ["guild:1", "channel:2", "user:3"]}}}"#,
            "\n",
            r#"{"name": "claims a redaction", "event": {"name": "MESSAGE_CREATE", "channelId": "2", "payload": {"content": "secret"}}, "expect": {"deliver": {"topics": ["channel:2"], "payload": {"content": "[redacted]"}}}}"#,
            "\n",
        ),
    )
    .expect("write");
    let (code, stdout, _) = run(
        "event-router",
        env!("GATEWAY_DEFAULT_EVENT_ROUTER_WASM"),
        &cases,
    );
    assert_eq!(code, 1, "{stdout}");
    assert!(
        stdout.contains("FAIL claims a user topic: expected deliver to"),
        "{stdout}"
    );
    assert!(
        stdout.contains("FAIL claims a redaction: expected deliver to {\"channel:2\"} with payload {\"content\":\"[redacted]\"}, got deliver to [\"channel:2\"] (original payload)"),
        "{stdout}"
    );
    assert!(
        stdout.trim_end().ends_with("0 passed, 2 failed"),
        "{stdout}"
    );
}

#[test]
fn a_malformed_case_file_exits_2_naming_the_line() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cases = dir.path().join("cases.jsonl");
    let good = case_lines(&cases_of("voice-filter")).remove(0);
    let bad_cases = [
        ("{not json", "not valid JSON"),
        (
            r#"{"name": "x", "event": {"name": "VOICE_STATE_UPDATE"}, "expect": {"relay": 1}}"#,
            "expect.relay must be a guild id string",
        ),
        (
            r#"{"name": "x", "event": {"name": "VOICE_STATE_UPDATE", "guild": "1"}, "expect": {"reject": true}}"#,
            "unknown key \"guild\"",
        ),
        (
            r#"{"event": {"name": "VOICE_STATE_UPDATE"}, "expect": {"reject": true}}"#,
            "missing \"name\"",
        ),
    ];
    for (bad, why) in bad_cases {
        std::fs::write(&cases, format!("# header\n{good}\n\n{bad}\n")).expect("write");
        let (code, stdout, stderr) = run(
            "voice-filter",
            env!("GATEWAY_DEFAULT_VOICE_FILTER_WASM"),
            &cases,
        );
        assert_eq!(code, 2, "{bad}: {stdout}{stderr}");
        assert!(
            stdout.is_empty(),
            "nothing runs before the file is valid: {stdout}"
        );
        let expected = format!("{}:4: ", cases.display());
        assert!(
            stderr.contains(&expected) && stderr.contains(why),
            "{bad}: wanted {expected}…{why} in {stderr}"
        );
    }
}

#[test]
fn init_gets_the_component_config_by_the_serve_rule() {
    let dir = tempfile::tempdir().expect("tempdir");
    let wasm = dir.path().join("limiter.wasm");
    std::fs::copy(env!("GATEWAY_DEFAULT_RATE_LIMITER_WASM"), &wasm).expect("copy");
    let wasm = wasm.to_str().expect("utf8");
    let cases = dir.path().join("cases.jsonl");
    let req = r#"{"userId": "1", "channelId": "2", "nowMs": 0}"#;
    std::fs::write(
        &cases,
        format!(
            r#"{{"name": "burst of 2", "requests": [{req}, {req}, {req}], "expect": [{{"allow": 1}}, {{"allow": 0}}, {{"deny": true}}]}}"#
        ) + "\n",
    )
    .expect("write");

    // No config: the default burst of 10, so the case fails.
    let (code, stdout, _) = run("rate-limiter", wasm, &cases);
    assert_eq!(code, 1, "{stdout}");

    // `limiter.toml` beside the wasm is its config.
    std::fs::write(dir.path().join("limiter.toml"), "burst = 2\n").expect("write");
    let (code, stdout, stderr) = run("rate-limiter", wasm, &cases);
    assert_eq!(code, 0, "{stdout}{stderr}");

    // --component-config wins over the file beside the wasm; a key init refuses is a refusal.
    let other = dir.path().join("other.toml");
    std::fs::write(&other, "brust = 2\n").expect("write");
    let (code, stdout, _) = run_with(
        "rate-limiter",
        wasm,
        &cases,
        &["--component-config", other.to_str().expect("utf8")],
    );
    assert_eq!(code, 1, "{stdout}");
    assert!(
        stdout.starts_with("refused:") && stdout.contains("\"brust\""),
        "{stdout}"
    );
}
