//! The legacy voice bridge `/api/ws` end to end: a real host linked to the simulator, real
//! WebSocket clients, the real default voice-filter and a real replacement component.

use std::collections::BTreeSet;
use std::time::Duration;

use gateway_host::policy::SlotKind;
use gateway_sim::SimHandle;
use gateway_tests::commands::Request;
use gateway_tests::host::{TestHost, start_host};
use gateway_tests::legacy_ws::{Auth, LegacyClient, connect};
use serde_json::{Value, json};

/// A voice-filter that also relays TYPING_START (`tests/components/voice-typing`).
const VOICE_TYPING: &[u8] = include_bytes!(env!("GATEWAY_TEST_VOICE_TYPING_WASM"));
const USER: &str = "100000000000000001";
const VOICE: [&str; 2] = ["VOICE_STATE_UPDATE", "VOICE_SERVER_UPDATE"];

/// The simulator's event frames from `from_seq` on, parsed.
fn frames(sim: &SimHandle, from_seq: u64) -> Vec<Value> {
    sim.control()
        .event_frames(from_seq)
        .iter()
        .filter_map(|f| serde_json::from_str(f).ok())
        .collect()
}

fn guild(frame: &Value) -> Option<&str> {
    frame["d"]["guild_id"].as_str()
}

/// Emit a batch of random events, then more one by one until the last one satisfies `last`
/// (so a client that received that one has been offered everything before it). Returns the
/// frames emitted.
fn emit_ending_with(sim: &SimHandle, last: impl Fn(&Value) -> bool) -> Vec<Value> {
    let from = sim.control().session().1 + 1;
    sim.control().emit(150);
    for _ in 0..2_000 {
        let all = frames(sim, from);
        if all.last().is_some_and(&last) {
            return all;
        }
        sim.control().emit(1);
    }
    panic!("the simulator never emitted the closing event");
}

/// Read `n` event frames, skipping those whose traceId is in `earlier` (events emitted
/// before the join, which the relay may or may not have handled before it); every frame must
/// be an `event`.
async fn read_events(
    client: &mut LegacyClient,
    n: usize,
    earlier: &BTreeSet<String>,
) -> Vec<Value> {
    let mut got = Vec::with_capacity(n);
    while got.len() < n {
        let frame = client
            .next(Duration::from_secs(10))
            .await
            .unwrap_or_else(|e| panic!("after {} of {n} events: {e:#}", got.len()));
        assert_eq!(frame["op"], "event", "unexpected frame {frame}");
        if !earlier.contains(frame["traceId"].as_str().unwrap_or_default()) {
            got.push(frame);
        }
    }
    got
}

fn trace_ids<'a>(frames: impl IntoIterator<Item = &'a Value>, key: &str) -> Vec<String> {
    frames
        .into_iter()
        .map(|f| f[key].as_str().unwrap_or_default().to_string())
        .collect()
}

async fn bridge_host() -> TestHost {
    start_host(|c| c.legacy_ws.enabled = true)
        .await
        .expect("host")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_joined_client_gets_exactly_its_guilds_voice_events_and_a_swap_changes_that_live() {
    let host = bridge_host().await;
    let sim = &host.sim;
    let token = host.token(USER, &["*"]);
    let (mut client, hello) = connect(&host.addr, Auth::Header(&token))
        .await
        .expect("connect");
    assert_eq!(hello["op"], "hello");
    assert_eq!(hello["user"], USER);

    // The guilds of the simulated world; follow the first, ignore the others.
    sim.control().emit(60);
    let before_join: BTreeSet<String> = frames(sim, 1)
        .iter()
        .map(|f| f["traceId"].as_str().unwrap_or_default().to_string())
        .collect();
    let guilds: BTreeSet<String> = frames(sim, 1)
        .iter()
        .filter_map(|f| guild(f).map(str::to_string))
        .collect();
    assert!(guilds.len() >= 2, "the world has several guilds");
    let x = guilds.iter().next().cloned().expect("a guild");
    client.join(&x).await.expect("join");

    let is_x_voice =
        |f: &Value| guild(f) == Some(&x) && VOICE.contains(&f["t"].as_str().unwrap_or(""));
    let emitted = emit_ending_with(sim, is_x_voice);
    let expected: Vec<&Value> = emitted.iter().filter(|f| is_x_voice(f)).collect();
    let received = read_events(&mut client, expected.len(), &before_join).await;
    assert_eq!(
        trace_ids(&received, "traceId"),
        trace_ids(expected.iter().copied(), "traceId"),
        "exactly guild X's voice events, in order"
    );
    for frame in &received {
        assert_eq!(frame["guildId"], x.as_str());
        assert!(VOICE.contains(&frame["type"].as_str().unwrap_or("")));
        assert!(frame["data"].is_object());
    }
    assert!(
        emitted
            .iter()
            .any(|f| guild(f) != Some(&x) && VOICE.contains(&f["t"].as_str().unwrap_or(""))),
        "other guilds had voice events too (and they were not relayed)"
    );

    // Hot swap: the same open client now also gets TYPING_START, nobody reconnects.
    let connects = host.host().link.stats().connects;
    let bus_subscribers = host.host().bus.subscriber_count();
    host.host()
        .policies
        .load(
            SlotKind::VoiceFilter,
            VOICE_TYPING.to_vec(),
            "test".into(),
            Default::default(),
        )
        .await
        .expect("the replacement voice-filter loads");
    let is_x_typing = |f: &Value| guild(f) == Some(&x) && f["t"] == "TYPING_START";
    let emitted = emit_ending_with(sim, is_x_typing);
    let expected: Vec<&Value> = emitted
        .iter()
        .filter(|f| is_x_voice(f) || is_x_typing(f))
        .collect();
    let received = read_events(&mut client, expected.len(), &before_join).await;
    assert_eq!(
        trace_ids(&received, "traceId"),
        trace_ids(expected.iter().copied(), "traceId"),
        "after the swap: guild X's voice and typing events, on the same connection"
    );
    assert!(received.iter().any(|f| f["type"] == "TYPING_START"));
    assert_eq!(
        host.host().link.stats().connects,
        connects,
        "the link did not reconnect"
    );
    assert_eq!(host.host().bus.subscriber_count(), bus_subscribers);
}

#[tokio::test]
async fn off_by_default_the_route_is_404_and_nothing_subscribes() {
    let host = start_host(|_| {}).await.expect("host");
    let addr = host.addr.parse().expect("addr");
    let reply = Request::get("/api/ws")
        .header("Connection", "upgrade")
        .header("Upgrade", "websocket")
        .header("Sec-WebSocket-Version", "13")
        .header("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ==")
        .bearer(&host.token(USER, &["*"]))
        .send(addr)
        .await
        .expect("request");
    assert_eq!(reply.status, 404);
    assert_eq!(reply.json().expect("json")["error"]["code"], "not_found");
    assert_eq!(
        host.host().bus.subscriber_count(),
        1,
        "only the SSE hub subscribes to the bus"
    );
    assert!(host.host().legacy.is_none());

    let on = bridge_host().await;
    assert_eq!(on.host().bus.subscriber_count(), 2, "hub + legacy relay");
}

#[tokio::test]
async fn auth_guild_grants_and_bad_frames() {
    let host = bridge_host().await;
    let addr = host.addr.parse().expect("addr");
    // No token: 401 before any upgrade, in the JSON error shape.
    let reply = Request::get("/api/ws")
        .header("Connection", "upgrade")
        .header("Upgrade", "websocket")
        .header("Sec-WebSocket-Version", "13")
        .header("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ==")
        .send(addr)
        .await
        .expect("request");
    assert_eq!(reply.status, 401);
    // Not an upgrade: 426.
    let reply = Request::get("/api/ws")
        .bearer(&host.token(USER, &["*"]))
        .send(addr)
        .await
        .expect("request");
    assert_eq!(reply.status, 426);

    // A browser-style token in the subprotocol list; the token grants one guild only.
    let token = host.token(USER, &["voice:111"]);
    let (mut client, hello) = connect(&host.addr, Auth::Subprotocol(&token))
        .await
        .expect("subprotocol auth");
    assert_eq!(hello["op"], "hello");
    client.join("111").await.expect("granted guild");
    client
        .send(json!({"v": 1, "op": "join", "guildId": "222"}))
        .await
        .expect("send");
    let refused = client.next(Duration::from_secs(5)).await.expect("reply");
    assert_eq!(refused["op"], "error");
    assert_eq!(refused["code"], "forbidden_guild");
    for (bad, code) in [
        (json!({"v": 1, "op": "dance"}), "unknown_op"),
        (json!({"v": 9, "op": "join", "guildId": "1"}), "bad_frame"),
        (
            json!({"v": 1, "op": "join", "guildId": "not-a-snowflake"}),
            "bad_frame",
        ),
    ] {
        client.send(bad).await.expect("send");
        let reply = client.next(Duration::from_secs(5)).await.expect("reply");
        assert_eq!(reply["code"], code, "{reply}");
    }
    client
        .send(json!({"v": 1, "op": "ping", "nonce": "n1"}))
        .await
        .expect("send");
    let pong = client.next(Duration::from_secs(5)).await.expect("pong");
    assert_eq!(pong, json!({"op": "pong", "v": 1, "nonce": "n1"}));
    client
        .send(json!({"v": 1, "op": "leave", "guildId": "111"}))
        .await
        .expect("send");
    assert_eq!(
        client.next(Duration::from_secs(5)).await.expect("left")["op"],
        "left"
    );
}
