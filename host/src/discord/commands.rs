//! Commands over REST: the command pipeline's frames, executed against Discord's API, and
//! answered with the same acks the link would send.
//!
//! Why this shape: the dispatcher (`commands::dispatcher`) already owns ordering,
//! retries, expiry and exactly-one-outcome against a [`crate::link::LinkHandle`]. In
//! direct Discord mode the handle's outbound channel leads here instead of to a socket:
//! each command becomes one REST call (waiting for its rate-limit bucket), and its result
//! becomes an ack. A 5xx or transport failure is a retryable ack (the dispatcher backs
//! off and sends again); a 4xx is a final `rejected` with Discord's code.
//!
//! * send-message → `POST /channels/{id}/messages` with `nonce` and `enforce_nonce`, so
//!   a retry after a lost answer does not post twice. The nonce is the caller's when
//!   given, else derived from the requestId (Discord allows 25 characters).
//! * add-reaction → `PUT /channels/{id}/messages/{mid}/reactions/{emoji}/@me`, the emoji
//!   percent-encoded (`name:id` for custom ones).
//! * typing-start → `POST /channels/{id}/typing`.

use std::collections::HashSet;
use std::sync::Arc;

use gateway_protocol::{Ack, Command, CommandBody, HostFrame};
use parking_lot::Mutex;
use reqwest::Method;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use tokio::sync::{broadcast, mpsc};
use tracing::{debug, warn};

use super::rest::{RestClient, RouteKey};

/// Discord's longest nonce.
const MAX_NONCE: usize = 25;

/// Reads command frames until the channel closes; one task per command.
pub(crate) async fn run(
    mut frames: mpsc::Receiver<String>,
    rest: RestClient,
    acks: broadcast::Sender<Arc<Ack>>,
) {
    let in_flight: Arc<Mutex<HashSet<String>>> = Arc::default();
    while let Some(frame) = frames.recv().await {
        let command = match HostFrame::decode(&frame) {
            Ok(HostFrame::Command(c)) => c,
            Ok(_) => continue,
            Err(e) => {
                warn!(error = %e, "undecodable command frame skipped");
                continue;
            }
        };
        if !in_flight.lock().insert(command.request_id.clone()) {
            debug!(request_id = %command.request_id, "command already in flight; repeat ignored");
            continue;
        }
        let (rest, acks, in_flight) = (rest.clone(), acks.clone(), in_flight.clone());
        tokio::spawn(async move {
            let ack = execute(&rest, &command).await;
            in_flight.lock().remove(&command.request_id);
            let _ = acks.send(Arc::new(ack));
        });
    }
}

/// One command → one REST call → one ack.
pub async fn execute(rest: &RestClient, command: &Command) -> Ack {
    let rid = command.request_id.clone();
    let result = match &command.body {
        CommandBody::SendMessage(m) => {
            let nonce = nonce_for(m.nonce.as_deref(), &command.request_id);
            let body = json!({"content": m.content, "nonce": nonce, "enforce_nonce": true});
            rest.request(
                Method::POST,
                format!("/channels/{}/messages", segment(&m.channel_id)),
                RouteKey {
                    route: "POST /channels/{id}/messages",
                    major: m.channel_id.clone(),
                },
                Some(body),
            )
            .await
            .map(|v| json!({"messageId": v["id"], "channelId": v["channel_id"], "nonce": v["nonce"]}))
        }
        CommandBody::AddReaction(r) => rest
            .request(
                Method::PUT,
                format!(
                    "/channels/{}/messages/{}/reactions/{}/@me",
                    segment(&r.channel_id),
                    segment(&r.message_id),
                    segment(&r.emoji)
                ),
                RouteKey {
                    route: "PUT /channels/{id}/messages/{id}/reactions/{emoji}/@me",
                    major: r.channel_id.clone(),
                },
                None,
            )
            .await
            .map(|_| json!({})),
        CommandBody::TypingStart(t) => rest
            .request(
                Method::POST,
                format!("/channels/{}/typing", segment(&t.channel_id)),
                RouteKey {
                    route: "POST /channels/{id}/typing",
                    major: t.channel_id.clone(),
                },
                None,
            )
            .await
            .map(|_| json!({})),
    };
    match result {
        Ok(v) => Ack::success(rid, v),
        Err(e) => Ack::failure(rid, e.ack_code(), e.ack_message()),
    }
}

/// The caller's nonce if it fits, else one derived from the requestId (stable across
/// retries, so Discord de-duplicates them).
fn nonce_for(given: Option<&str>, request_id: &str) -> Value {
    match given.filter(|n| !n.is_empty() && n.len() <= MAX_NONCE) {
        Some(n) => json!(n),
        None => {
            let digest = hex::encode(Sha256::digest(request_id.as_bytes()));
            json!(digest[..MAX_NONCE])
        }
    }
}

/// Percent-encodes a path segment: everything but RFC 3986 unreserved characters.
pub fn segment(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emoji_are_percent_encoded() {
        assert_eq!(segment("👍"), "%F0%9F%91%8D");
        assert_eq!(segment("party:123"), "party%3A123");
        assert_eq!(segment("1234567890"), "1234567890");
    }

    #[test]
    fn nonces_are_stable_and_short() {
        let a = nonce_for(None, "req-1");
        assert_eq!(a, nonce_for(None, "req-1"));
        assert_ne!(a, nonce_for(None, "req-2"));
        assert_eq!(a.as_str().map(str::len), Some(MAX_NONCE));
        assert_eq!(nonce_for(Some("n-1"), "req-1"), json!("n-1"));
        let long = "x".repeat(40);
        assert_ne!(nonce_for(Some(&long), "req-1"), json!(long));
    }
}
