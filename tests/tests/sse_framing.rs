//! Payloads with raw line breaks (pretty-printed JSON, bare CR, blank lines) sent by the
//! real simulator reach an SSE client parsed like a browser's `EventSource` as one
//! event each, with the payload intact.

use std::time::Duration;

use gateway_tests::host::start_host;
use gateway_tests::sse_client::get;
use serde_json::Value;

const T: Duration = Duration::from_secs(10);

/// Valid JSON payloads whose whitespace between tokens holds line breaks.
const PAYLOADS: &[&str] = &[
    // Pretty-printed, with an escaped newline inside a string.
    "{\n  \"guild_id\": \"1\",\n  \"content\": \"two\\nlines\",\n  \"embeds\": [\n    {}\n  ]\n}",
    // Bare CRs, and a CRLF.
    "{\"guild_id\":\"1\",\r\"content\":\r\"cr\\r\",\r\n\"n\":1}",
    // Blank lines (which would end an SSE event early).
    "{\"guild_id\":\"1\",\n\n\"content\":\"blank\"\n\n\n}",
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn payloads_with_raw_line_breaks_arrive_as_one_parseable_event_each() -> anyhow::Result<()> {
    let h = start_host(|_| {}).await?;
    let auth = h.bearer(&["*"]);
    let mut r = get(&h.addr, "/api/stream", &[("Authorization", &auth)]).await?;
    assert_eq!(r.status, 200);
    for raw in PAYLOADS {
        let seq = h
            .sim
            .control()
            .emit_raw("MESSAGE_CREATE", raw)
            .expect("valid JSON");
        let (id, name, envelope) = r.next_event(T).await?.expect("the stream stays open");
        assert_eq!(name, "MESSAGE_CREATE", "{raw:?}");
        assert!(id.is_some());
        assert_eq!(envelope["upstreamSeq"].as_u64(), Some(seq));
        let expected: Value = serde_json::from_str(raw)?;
        assert_eq!(envelope["data"], expected, "payload intact: {raw:?}");
    }
    // A plain event after them is still its own event.
    h.sim.control().emit(1);
    let (_, _, envelope) = r.next_event(T).await?.expect("open");
    assert_eq!(
        envelope["upstreamSeq"].as_u64(),
        Some(PAYLOADS.len() as u64 + 1)
    );
    Ok(())
}
