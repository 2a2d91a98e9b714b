//! Property tests over everything that comes from outside the process: link frames, the
//! stream's query and `Last-Event-ID`, command bodies. Random and mutated inputs must never
//! panic the parsers, never make the host answer 5xx, and every refusal must use the JSON
//! error shape. Case counts are bounded so the suite stays fast and deterministic in size.

use std::time::Duration;

use gateway_host::commands::body;
use gateway_host::sse::frame::EventId;
use gateway_protocol::{CommandKind, UpstreamFrame};
use gateway_tests::commands::Request;
use gateway_tests::host::start_host;
use gateway_tests::sse_client;
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};
use serde_json::{Value, json};

fn runner(cases: u32) -> TestRunner {
    TestRunner::new(Config {
        cases,
        failure_persistence: None,
        ..Config::default()
    })
}

/// Arbitrary JSON values, a few levels deep.
fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(Value::from),
        ".{0,40}".prop_map(Value::from),
        "[1-9][0-9]{0,19}".prop_map(Value::from),
    ];
    leaf.prop_recursive(3, 24, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::from),
            prop::collection::btree_map(
                prop_oneof![
                    Just("v".to_string()),
                    Just("op".to_string()),
                    Just("seq".to_string()),
                    Just("d".to_string()),
                    Just("channelId".to_string()),
                    Just("content".to_string()),
                    Just("emoji".to_string()),
                    "[a-zA-Z]{1,8}",
                ],
                inner,
                0..6
            )
            .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// Upstream frames: well-formed ones with random fields, and random text.
fn link_frame() -> impl Strategy<Value = String> {
    prop_oneof![
        ".{0,200}",
        json_value().prop_map(|v| v.to_string()),
        (
            prop_oneof![
                Just("event"),
                Just("ack"),
                Just("pong"),
                Just("hello"),
                Just("x")
            ],
            any::<u64>(),
            json_value(),
            json_value()
        )
            .prop_map(|(op, seq, d, extra)| {
                json!({"v": 1, "op": op, "seq": seq, "traceId": "t", "t": "MESSAGE_CREATE",
                       "d": d, "ts": 0, "requestId": "r", "ok": extra, "sessionId": "s",
                       "resumed": false})
                .to_string()
            }),
    ]
}

#[test]
fn link_frames_never_panic_and_events_round_trip() {
    runner(2_000)
        .run(&link_frame(), |text| {
            if let Ok(UpstreamFrame::Event(event)) = UpstreamFrame::decode(&text) {
                let again = UpstreamFrame::Event(event).encode();
                prop_assert!(
                    matches!(UpstreamFrame::decode(&again), Ok(UpstreamFrame::Event(_))),
                    "re-encoded event does not decode: {again}"
                );
            }
            Ok(())
        })
        .expect("link frame property");
}

#[test]
fn command_bodies_never_panic() {
    let kinds = [
        CommandKind::SendMessage,
        CommandKind::AddReaction,
        CommandKind::TypingStart,
    ];
    let strategy = (0..3usize, json_value(), ".{0,64}");
    runner(2_000)
        .run(&strategy, |(k, value, text)| {
            let _ = body::parse(kinds[k], value.to_string().as_bytes());
            let _ = body::parse(kinds[k], text.as_bytes());
            Ok(())
        })
        .expect("command body property");
}

#[test]
fn event_ids_parse_or_refuse_and_round_trip() {
    runner(2_000)
        .run(&(".{0,40}", any::<u64>(), any::<u64>()), |(raw, e, s)| {
            let _ = raw.parse::<EventId>();
            let id = EventId { epoch: e, seq: s };
            prop_assert_eq!(id.to_string().parse::<EventId>(), Ok(id));
            Ok(())
        })
        .expect("event id property");
}

/// Visible ASCII (what a header may carry), including separators and junk.
fn header_text() -> impl Strategy<Value = String> {
    prop_oneof![
        "[ -~]{0,60}",
        "[0-9]{1,20}-[0-9]{1,20}",
        Just(String::new())
    ]
}

fn percent_encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// An error answer must be the documented JSON shape.
fn assert_error_shape(status: u16, body: &str) -> Result<(), TestCaseError> {
    prop_assert!(status < 500 || status == 503, "5xx answer {status}: {body}");
    let v: Value = serde_json::from_str(body)
        .map_err(|e| TestCaseError::fail(format!("{status} body is not JSON ({e}): {body}")))?;
    prop_assert_eq!(&v["version"], "1.0");
    prop_assert!(v["error"]["code"].is_string(), "no error.code: {}", body);
    Ok(())
}

#[test]
fn hostile_http_inputs_get_clean_answers() {
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    // Every case must reach the body checks: no invalid-command budget to run out of.
    let host = rt
        .block_on(start_host(|c| c.commands.invalid_burst = u32::MAX))
        .expect("host");
    let addr: std::net::SocketAddr = host.addr.parse().expect("addr");
    let bearer = host.bearer(&["*"]);
    let token = host.token("100000000000000001", &["*"]);

    // The stream: random topics and resume ids, as query and as header.
    let stream_inputs = (".{0,40}", header_text(), header_text(), any::<bool>());
    runner(64)
        .run(
            &stream_inputs,
            |(topics, query_id, header_id, use_header)| {
                rt.block_on(async {
                    let path = format!(
                        "/api/stream?topics={}&lastEventId={}",
                        percent_encode(&topics),
                        percent_encode(&query_id)
                    );
                    let mut headers = vec![("Authorization", bearer.as_str())];
                    if use_header {
                        headers.push(("Last-Event-ID", header_id.trim()));
                    }
                    let response = tokio::time::timeout(
                        Duration::from_secs(10),
                        sse_client::get(&host.addr, &path, &headers),
                    )
                    .await
                    .map_err(|_| TestCaseError::fail("stream request timed out"))?
                    .map_err(|e| TestCaseError::fail(format!("stream request failed: {e:#}")))?;
                    if response.status != 200 {
                        let status = response.status;
                        let body = response
                            .json()
                            .await
                            .map_err(|e| TestCaseError::fail(format!("{status}: {e:#}")))?;
                        assert_error_shape(status, &body.to_string())?;
                    }
                    Ok(())
                })
            },
        )
        .expect("stream input property");

    // Commands: random bodies (JSON or not) to every kind.
    let command_inputs = (
        prop_oneof![
            Just("send-message"),
            Just("add-reaction"),
            Just("typing-start"),
            Just("nope")
        ],
        prop_oneof![json_value().prop_map(|v| v.to_string()), ".{0,80}"],
    );
    runner(96)
        .run(&command_inputs, |(kind, body)| {
            rt.block_on(async {
                let reply = Request::post(&format!("/api/commands/{kind}"), body)
                    .json()
                    .bearer(&token)
                    .send(addr)
                    .await
                    .map_err(|e| TestCaseError::fail(format!("{e:#}")))?;
                if reply.status >= 400 {
                    assert_error_shape(reply.status, &reply.body)?;
                }
                Ok(())
            })
        })
        .expect("command input property");

    let health = rt
        .block_on(Request::get("/healthz").send(addr))
        .expect("healthz after the fuzzing");
    assert_eq!(health.status, 200, "the host still answers");
}
