//! Host event ids and SSE frames.
//!
//! The SSE `id` is the host's own: `<epoch>-<seq>`, where `epoch` is fixed per host process
//! (its start time in ms) and `seq` counts the events the host has published. An id from
//! another epoch (a host restart) or outside the replay ring cannot be placed, and the
//! client gets an explicit `reset` event instead of a silent gap.
//!
//! In cluster mode (`docs/cluster.md`) the id is the JetStream stream sequence, a bare
//! number, the same on every host: an [`EventId`] with epoch [`CLUSTER_EPOCH`]. The link
//! holder stores each frame *without* its id ([`stored_body`], [`stored_loss_body`]: the
//! envelope's `"id"` is empty) and every host fills the sequence in when it reads the frame
//! back ([`Frame::from_stored`]).
//!
//! Every frame's `data:` is one line whatever the upstream or a router sent: a payload is
//! kept as raw JSON, and raw JSON may hold line breaks between its tokens (pretty-printed
//! JSON), which would end the SSE field early. Inside JSON strings line breaks are always
//! escaped, so every raw CR or LF in a valid JSON text is insignificant whitespace; they
//! are turned into spaces, once per event, and the JSON value is unchanged.

use std::fmt;
use std::str::FromStr;

use bytes::Bytes;
use serde::Serialize;
use serde_json::value::RawValue;

use crate::bus::BusEvent;

/// A host event id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct EventId {
    pub epoch: u64,
    pub seq: u64,
}

/// The epoch of cluster-mode ids: the id is the stream sequence alone.
pub const CLUSTER_EPOCH: u64 = 0;

impl fmt::Display for EventId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.epoch == CLUSTER_EPOCH {
            write!(f, "{}", self.seq)
        } else {
            write!(f, "{}-{}", self.epoch, self.seq)
        }
    }
}

impl FromStr for EventId {
    type Err = ();

    fn from_str(s: &str) -> Result<Self, ()> {
        let s = s.trim();
        let Some((epoch, seq)) = s.split_once('-') else {
            // A bare number: a cluster id (a stream sequence).
            return Ok(EventId {
                epoch: CLUSTER_EPOCH,
                seq: s.parse().map_err(|_| ())?,
            });
        };
        let epoch = epoch.parse().map_err(|_| ())?;
        if epoch == CLUSTER_EPOCH {
            return Err(());
        }
        Ok(EventId {
            epoch,
            seq: seq.parse().map_err(|_| ())?,
        })
    }
}

/// One event, serialized once, shared by every subscriber it goes to.
#[derive(Debug)]
pub struct Frame {
    pub id: EventId,
    /// Topics the router gave it.
    pub topics: Vec<String>,
    /// Goes to every subscriber whatever its topics (a `reset` announcing a loss).
    pub to_all: bool,
    /// `id: …\nevent: …\ndata: …\n\n`.
    pub bytes: Bytes,
    /// When the host read the upstream frame (for latency metrics).
    pub received_at: std::time::Instant,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Envelope<'a> {
    version: &'static str,
    id: String,
    #[serde(rename = "type")]
    kind: &'a str,
    trace_id: &'a str,
    guild_id: Option<&'a str>,
    channel_id: Option<&'a str>,
    /// Upstream emission time, ms since the Unix epoch.
    timestamp: u64,
    /// Upstream session and seq, for diagnostics.
    upstream_session: &'a str,
    upstream_seq: u64,
    data: &'a RawValue,
}

impl Frame {
    /// Serialize `event` as an SSE frame with host id `id`; `payload` replaces `d` if set.
    pub fn build(
        id: EventId,
        event: &BusEvent,
        meta: &crate::policy::types::EventMeta,
        topics: Vec<String>,
        payload: Option<&RawValue>,
    ) -> Frame {
        let body = event_body(&id.to_string(), event, meta, payload);
        let bytes = Bytes::from(format!("id: {id}\n{body}\n"));
        Frame {
            id,
            topics,
            to_all: false,
            bytes,
            received_at: event.received_at,
        }
    }

    /// A `reset` frame with its own host id: events were lost before the next one. It
    /// goes to every subscriber and sits in the replay ring like any event.
    pub fn loss(id: EventId, cause: &'static str, reason: &str) -> Frame {
        let body = reset_body(Some(id), cause, reason, None, None);
        Frame {
            id,
            topics: Vec::new(),
            to_all: true,
            bytes: Bytes::from(format!("id: {id}\nevent: reset\ndata: {body}\n\n")),
            received_at: std::time::Instant::now(),
        }
    }

    /// A frame read back from the cluster's stream: `body` is a [`stored_body`] or
    /// [`stored_loss_body`]; the stream sequence `seq` becomes the `id:` line and fills the
    /// envelope's empty `"id"` (the first `"id":""` of the data line is always the
    /// envelope's: it comes before the payload, and a JSON string cannot hold a bare quote).
    pub fn from_stored(
        seq: u64,
        topics: Vec<String>,
        to_all: bool,
        body: &[u8],
        received_at: std::time::Instant,
    ) -> Frame {
        let id = EventId {
            epoch: CLUSTER_EPOCH,
            seq,
        };
        let filled = format!("\"id\":\"{seq}\"");
        let mut out = Vec::with_capacity(body.len() + 40);
        out.extend_from_slice(format!("id: {seq}\n").as_bytes());
        match find(body, EMPTY_ID) {
            Some(at) => {
                out.extend_from_slice(&body[..at]);
                out.extend_from_slice(filled.as_bytes());
                out.extend_from_slice(&body[at + EMPTY_ID.len()..]);
            }
            None => out.extend_from_slice(body),
        }
        out.push(b'\n');
        Frame {
            id,
            topics,
            to_all,
            bytes: Bytes::from(out),
            received_at,
        }
    }

    /// Bytes this frame holds (for the replay ring's byte bound).
    pub fn cost(&self) -> usize {
        self.bytes.len() + self.topics.iter().map(|t| t.len() + 24).sum::<usize>() + 96
    }
}

/// The envelope's id before the stream sequence is known.
const EMPTY_ID: &[u8] = b"\"id\":\"\"";

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// `event: …\ndata: …\n` of an event (no `id:` line, no closing blank line), with `id` as
/// the envelope's id.
fn event_body(
    id: &str,
    event: &BusEvent,
    meta: &crate::policy::types::EventMeta,
    payload: Option<&RawValue>,
) -> String {
    let envelope = Envelope {
        version: "1.0",
        id: id.to_string(),
        kind: &event.t,
        trace_id: &event.trace_id,
        guild_id: meta.guild_id.as_deref(),
        channel_id: meta.channel_id.as_deref(),
        timestamp: event.ts,
        upstream_session: &event.session_id,
        upstream_seq: event.seq,
        data: payload.unwrap_or(&event.d),
    };
    // Serializing borrowed strings and raw JSON cannot fail.
    let data = one_line(serde_json::to_string(&envelope).unwrap_or_default());
    let name = sanitize_line(&event.t);
    format!("event: {name}\ndata: {data}\n")
}

/// The frame of `event` as the link holder stores it in the cluster's stream: no `id:`
/// line and an empty envelope id, both filled in by [`Frame::from_stored`].
pub fn stored_body(
    event: &BusEvent,
    meta: &crate::policy::types::EventMeta,
    payload: Option<&RawValue>,
) -> Bytes {
    Bytes::from(event_body("", event, meta, payload))
}

/// A `reset` announcing a loss, as the link holder stores it (see [`stored_body`]).
pub fn stored_loss_body(cause: &'static str, reason: &str) -> Bytes {
    let mut body = reset_body(None, cause, reason, None, None);
    body["id"] = serde_json::Value::String(String::new());
    Bytes::from(format!("event: reset\ndata: {body}\n"))
}

/// `json` (a valid JSON text) on one line: raw CR/LF can only be whitespace between
/// tokens, so they become spaces. No copy when there is none (the usual case).
fn one_line(json: String) -> String {
    if json.bytes().any(|b| b == b'\n' || b == b'\r') {
        json.replace(['\n', '\r'], " ")
    } else {
        json
    }
}

/// Event names come from upstream: keep them on one line.
fn sanitize_line(s: &str) -> String {
    s.chars().filter(|c| *c != '\n' && *c != '\r').collect()
}

/// `cause` of a reset whose resume id could not be placed.
pub const CAUSE_UNPLACEABLE: &str = "unplaceable_id";
/// `cause` of a reset announcing events the upstream lost (a seq gap, a new session).
pub const CAUSE_UPSTREAM_LOSS: &str = "upstream_loss";
/// `cause` of a reset standing for an event too large for the cluster stream (NATS's
/// `max_payload`): its subscribers learn they missed it instead of missing it silently.
pub const CAUSE_TOO_LARGE: &str = "too_large";
/// `cause` of a reset announcing events the host lost (the hub fell behind the bus).
pub const CAUSE_HUB_LAG: &str = "hub_lag";

/// The `reset` event at stream start: the requested id could not be placed, live events
/// follow. It has no `id:` line (the client's position is unknown).
pub fn reset_frame(last_event_id: &str, reason: &str, oldest: Option<EventId>) -> Bytes {
    let body = reset_body(None, CAUSE_UNPLACEABLE, reason, Some(last_event_id), oldest);
    Bytes::from(format!("event: reset\ndata: {body}\n\n"))
}

/// The one shape of a `reset` event's data.
fn reset_body(
    id: Option<EventId>,
    cause: &str,
    reason: &str,
    last_event_id: Option<&str>,
    oldest: Option<EventId>,
) -> serde_json::Value {
    serde_json::json!({
        "version": "1.0",
        "type": "reset",
        "id": id.map(|id| id.to_string()),
        "cause": cause,
        "reason": reason,
        "lastEventId": last_event_id,
        "oldestAvailable": oldest.map(|id| id.to_string()),
    })
}

/// Does any of `patterns` match any of `topics`? Patterns may end in `*`.
pub fn matches(patterns: &[String], topics: &[String]) -> bool {
    patterns
        .iter()
        .any(|p| topics.iter().any(|t| crate::auth::pattern_matches(p, t)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::types::EventMeta;

    fn meta() -> EventMeta {
        EventMeta {
            name: "MESSAGE_CREATE".into(),
            seq: 1,
            guild_id: None,
            channel_id: None,
            user_id: None,
            message_id: None,
        }
    }

    fn event(d: &str) -> BusEvent {
        BusEvent {
            session_id: "s".into(),
            seq: 1,
            trace_id: "t".into(),
            t: "MESSAGE_CREATE".into(),
            ts: 0,
            d: RawValue::from_string(d.into()).expect("valid json"),
            received_at: std::time::Instant::now(),
            loss_before: None,
        }
    }

    /// The `data:` value of a frame, checking the frame is one SSE event of three lines.
    fn data_line(bytes: &[u8]) -> serde_json::Value {
        let text = std::str::from_utf8(bytes).expect("utf8");
        let body = text.strip_suffix("\n\n").expect("ends the event");
        assert!(!body.contains('\r'), "no CR: {text:?}");
        let lines: Vec<&str> = body.split('\n').collect();
        assert_eq!(lines.len(), 3, "id, event, data: {text:?}");
        let data = lines[2].strip_prefix("data: ").expect("data line");
        serde_json::from_str(data).expect("data is JSON")
    }

    const PAYLOADS: &[&str] = &[
        "{\n  \"content\": \"a\\nb\",\n  \"n\": [1,\n 2]\n}",
        "{\"a\":\r1,\r\n\"b\":\"x\\r\"}",
        "{\"a\":1,\n\n\n\"b\":2}\n\n",
    ];

    #[test]
    fn raw_line_breaks_in_payloads_stay_on_one_data_line() {
        let id = EventId { epoch: 1, seq: 2 };
        for raw in PAYLOADS {
            let expected: serde_json::Value = serde_json::from_str(raw).expect("json");
            let e = event(raw);
            let f = Frame::build(id, &e, &meta(), vec![], None);
            assert_eq!(data_line(&f.bytes)["data"], expected, "{raw:?}");
            // The same for a router's replacement payload.
            let replacement = RawValue::from_string(raw.to_string()).expect("json");
            let f = Frame::build(id, &event("{}"), &meta(), vec![], Some(&replacement));
            assert_eq!(data_line(&f.bytes)["data"], expected, "{raw:?}");
        }
    }

    #[test]
    fn a_stored_frame_gets_the_stream_sequence_as_both_ids() {
        let e = event(r#"{"id":"","content":"x"}"#);
        let body = stored_body(&e, &meta(), None);
        let f = Frame::from_stored(77, vec![], false, &body, std::time::Instant::now());
        assert!(f.bytes.starts_with(b"id: 77\nevent: MESSAGE_CREATE\n"));
        let data = data_line(&f.bytes);
        assert_eq!(data["id"], "77");
        assert_eq!(
            data["data"]["id"], "",
            "the payload's own empty id is untouched"
        );
        let loss = stored_loss_body(CAUSE_UPSTREAM_LOSS, "gone");
        let f = Frame::from_stored(78, vec![], true, &loss, std::time::Instant::now());
        assert_eq!(data_line(&f.bytes)["id"], "78");
        assert_eq!(f.id.to_string(), "78");
        assert_eq!("78".parse::<EventId>(), Ok(f.id));
        assert_eq!("0-78".parse::<EventId>(), Err(()));
        assert_eq!("5-78".parse::<EventId>(), Ok(EventId { epoch: 5, seq: 78 }));
    }

    #[test]
    fn a_loss_reset_has_an_id_and_the_reset_shape() {
        let f = Frame::loss(EventId { epoch: 1, seq: 9 }, CAUSE_HUB_LAG, "lost");
        assert!(f.to_all);
        let text = std::str::from_utf8(&f.bytes).expect("utf8");
        assert!(text.starts_with("id: 1-9\nevent: reset\ndata: "), "{text}");
        let data = data_line(&f.bytes);
        assert_eq!(data["id"], "1-9");
        assert_eq!(data["cause"], "hub_lag");
        let start = reset_frame("x", "why", None);
        let start: serde_json::Value = serde_json::from_str(
            std::str::from_utf8(&start)
                .expect("utf8")
                .trim_end()
                .strip_prefix("event: reset\ndata: ")
                .expect("reset"),
        )
        .expect("json");
        let keys = |v: &serde_json::Value| {
            v.as_object()
                .map(|o| o.keys().cloned().collect::<Vec<_>>())
                .unwrap_or_default()
        };
        assert_eq!(keys(&start), keys(&data), "one shape");
        assert_eq!(start["cause"], "unplaceable_id");
    }
}
