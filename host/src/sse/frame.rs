//! Host event ids and SSE frames.
//!
//! The SSE `id` is the host's own: `<epoch>-<seq>`, where `epoch` is fixed per host process
//! (its start time in ms) and `seq` counts the events the host has published. An id from
//! another epoch (a host restart) or outside the replay ring cannot be placed, and the
//! client gets an explicit `reset` event instead of a silent gap.

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

impl fmt::Display for EventId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.epoch, self.seq)
    }
}

impl FromStr for EventId {
    type Err = ();

    fn from_str(s: &str) -> Result<Self, ()> {
        let (epoch, seq) = s.trim().split_once('-').ok_or(())?;
        Ok(EventId {
            epoch: epoch.parse().map_err(|_| ())?,
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
        let data = serde_json::to_string(&envelope).unwrap_or_default();
        let name = sanitize_line(&event.t);
        let bytes = Bytes::from(format!("id: {id}\nevent: {name}\ndata: {data}\n\n"));
        Frame {
            id,
            topics,
            bytes,
            received_at: event.received_at,
        }
    }
}

/// Event names come from upstream: keep them on one line.
fn sanitize_line(s: &str) -> String {
    s.chars().filter(|c| *c != '\n' && *c != '\r').collect()
}

/// The `reset` event: the requested id could not be placed, live events follow.
pub fn reset_frame(last_event_id: &str, reason: &str, oldest: Option<EventId>) -> Bytes {
    let body = serde_json::json!({
        "version": "1.0",
        "type": "reset",
        "lastEventId": last_event_id,
        "reason": reason,
        "oldestAvailable": oldest.map(|id| id.to_string()),
    });
    Bytes::from(format!("event: reset\ndata: {body}\n\n"))
}

/// Does any of `patterns` match any of `topics`? Patterns may end in `*`.
pub fn matches(patterns: &[String], topics: &[String]) -> bool {
    patterns
        .iter()
        .any(|p| topics.iter().any(|t| crate::auth::pattern_matches(p, t)))
}
