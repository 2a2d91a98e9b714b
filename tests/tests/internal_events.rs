//! App-side publishing `POST /api/internal/events`: a published event goes through the
//! router like an upstream one and reaches SSE and legacy voice clients; a bad request gets a
//! clear 4xx and publishes nothing.

use std::time::Duration;

use gateway_host::policy::SlotKind;
use gateway_tests::commands::{Request, app_events_with_voice};
use gateway_tests::host::{TestHost, start_host};
use gateway_tests::legacy_ws::{Auth, connect};
use gateway_tests::sse_client;
use serde_json::{Value, json};

const GUILD: &str = "500000000000000001";
const CHANNEL: &str = "500000000000000002";
const APP: &str = "900000000000000001";

async fn publishing_host() -> TestHost {
    start_host(app_events_with_voice).await.expect("host")
}

fn publisher(host: &TestHost, topics: &[&str], publish: &[&str]) -> String {
    host.host()
        .auth
        .mint_with_publish(
            APP,
            topics.iter().map(|t| t.to_string()).collect(),
            vec![],
            publish.iter().map(|t| t.to_string()).collect(),
            Duration::from_secs(600),
        )
        .expect("mint")
}

async fn post(
    host: &TestHost,
    token: Option<&str>,
    body: &str,
    content_type: &str,
) -> (u16, Value) {
    let mut request =
        Request::post("/api/internal/events", body).header("Content-Type", content_type);
    if let Some(token) = token {
        request = request.bearer(token);
    }
    let reply = request
        .send(host.addr.parse().expect("addr"))
        .await
        .expect("request");
    let json = reply.json().unwrap_or(Value::Null);
    (reply.status, json)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_published_event_reaches_sse_and_legacy_clients_through_the_router() {
    let host = publishing_host().await;
    let viewer = host.token("100000000000000001", &["*"]);
    let auth = format!("Bearer {viewer}");
    let mut sse = sse_client::get(
        &host.addr,
        &format!("/api/stream?topics=channel:{CHANNEL}"),
        &[("Authorization", auth.as_str())],
    )
    .await
    .expect("stream");
    assert_eq!(sse.status, 200);
    let (mut legacy, _) = connect(&host.addr, Auth::Header(&viewer))
        .await
        .expect("legacy");
    legacy.join(GUILD).await.expect("join");

    let router_calls = |h: &TestHost| {
        h.host()
            .policies
            .slot(SlotKind::EventRouter)
            .info()
            .current
            .calls
    };
    let calls_before = router_calls(&host);
    let token = publisher(
        &host,
        &[&format!("guild:{GUILD}"), &format!("channel:{CHANNEL}")],
        &["APP_*"],
    );
    let data =
        json!({"guild_id": GUILD, "channel_id": CHANNEL, "user_id": APP, "note": "mic check"});
    let (status, reply) = post(
        &host,
        Some(&token),
        &json!({"type": "APP_VOICE_NOTICE", "data": data}).to_string(),
        "application/json",
    )
    .await;
    assert_eq!(status, 202, "{reply}");
    let trace_id = reply["traceId"].as_str().expect("traceId").to_string();

    // SSE: the router put it on channel:<CHANNEL> (the subscription), with a host id.
    let (id, name, envelope) = loop {
        let (id, name, envelope) = sse
            .next_event(Duration::from_secs(10))
            .await
            .expect("sse")
            .expect("an event");
        if envelope["traceId"] == trace_id.as_str() {
            break (id, name, envelope);
        }
    };
    assert_eq!(name, "APP_VOICE_NOTICE");
    assert!(id.is_some_and(|id| id.contains('-')), "a host event id");
    assert_eq!(envelope["data"], data);
    assert_eq!(envelope["guildId"], GUILD);
    assert_eq!(envelope["upstreamSession"], "app");
    assert!(
        router_calls(&host) > calls_before,
        "the router decided its topics"
    );

    // Legacy: the voice filter relayed it to the guild's client.
    let frame = loop {
        let frame = legacy
            .next(Duration::from_secs(10))
            .await
            .expect("legacy frame");
        if frame["traceId"] == trace_id.as_str() {
            break frame;
        }
    };
    assert_eq!(frame["type"], "APP_VOICE_NOTICE");
    assert_eq!(frame["guildId"], GUILD);
    assert_eq!(frame["data"], data);
}

#[tokio::test]
async fn bad_requests_get_clear_errors_and_publish_nothing() {
    let host = publishing_host().await;
    let granted = format!("guild:{GUILD}");
    let token = publisher(&host, &[&granted], &["APP_*"]);
    let ok_data = json!({"guild_id": GUILD});
    let big = "x".repeat(70 * 1024);
    let cases: Vec<(Option<&str>, String, &str, u16, &str)> = vec![
        (
            None,
            json!({"type": "APP_X", "data": ok_data}).to_string(),
            "application/json",
            401,
            "unauthorized",
        ),
        (
            Some(&token),
            "not json".into(),
            "application/json",
            400,
            "invalid_event",
        ),
        (
            Some(&token),
            json!({"type": "app x", "data": ok_data}).to_string(),
            "application/json",
            400,
            "invalid_event",
        ),
        (
            Some(&token),
            json!({"type": "APP_X", "data": [1]}).to_string(),
            "application/json",
            400,
            "invalid_event",
        ),
        (
            Some(&token),
            json!({"type": "APP_X", "data": ok_data, "extra": 1}).to_string(),
            "application/json",
            400,
            "invalid_event",
        ),
        (
            Some(&token),
            json!({"type": "APP_X", "data": {"guild_id": 5}}).to_string(),
            "application/json",
            400,
            "invalid_event",
        ),
        (
            Some(&token),
            json!({"type": "MESSAGE_CREATE", "data": ok_data}).to_string(),
            "application/json",
            403,
            "forbidden",
        ),
        (
            Some(&token),
            json!({"type": "APP_X", "data": {"guild_id": "600000000000000001"}}).to_string(),
            "application/json",
            403,
            "forbidden",
        ),
        (
            Some(&token),
            json!({"type": "APP_X", "data": ok_data}).to_string(),
            "text/plain",
            415,
            "unsupported_media_type",
        ),
        (
            Some(&token),
            json!({"type": "APP_X", "data": {"blob": big}}).to_string(),
            "application/json",
            413,
            "payload_too_large",
        ),
    ];
    let published = host.host().bus.published_total();
    for (token, body, content_type, status, code) in cases {
        let (got, reply) = post(&host, token, &body, content_type).await;
        assert_eq!(got, status, "{reply}");
        assert_eq!(reply["error"]["code"], code, "{reply}");
        assert!(
            reply["error"]["message"]
                .as_str()
                .is_some_and(|m| !m.is_empty())
        );
    }
    // A viewer token (no publish claim) may not publish either.
    let viewer = host.token("100000000000000001", &["*"]);
    let (got, _) = post(
        &host,
        Some(&viewer),
        &json!({"type": "APP_X", "data": ok_data}).to_string(),
        "application/json",
    )
    .await;
    assert_eq!(got, 403);
    assert_eq!(
        host.host().bus.published_total(),
        published,
        "nothing was published"
    );
}

#[tokio::test]
async fn off_by_default() {
    let host = start_host(|_| {}).await.expect("host");
    let token = publisher(&host, &["*"], &["*"]);
    let (status, reply) = post(
        &host,
        Some(&token),
        &json!({"type": "APP_X", "data": {}}).to_string(),
        "application/json",
    )
    .await;
    assert_eq!(status, 404, "{reply}");
}
