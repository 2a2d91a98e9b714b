//! Keeps the link token and the Discord bot token out of the logs at every level.
//!
//! The token travels in the `Authorization` header of the upgrade request, and
//! `tungstenite` logs that whole request at trace level (`Request: "GET /link … Bearer
//! …"`). Our own code never logs the token ([`super::LinkToken`] redacts itself), so the
//! one leak is the client crates' trace output: [`may_log`] drops it. It is applied as a
//! per-layer filter in the binary's subscriber, so no `RUST_LOG` directive can turn it
//! back on.

use tracing::{Level, Metadata};

/// Targets whose trace output can carry the upgrade request or a frame (and so a token:
/// the link's Authorization header, Discord's Identify/Resume payloads), or an HTTP
/// request's headers (Discord REST's `Authorization: Bot …`).
const HANDSHAKE_TARGETS: [&str; 5] = [
    "tungstenite",
    "tokio_tungstenite",
    "reqwest",
    "hyper",
    "hyper_util",
];

/// False for trace events of the WebSocket client crates; true for everything else.
pub fn may_log(meta: &Metadata<'_>) -> bool {
    if *meta.level() != Level::TRACE {
        return true;
    }
    let target = meta.target();
    !HANDSHAKE_TARGETS
        .iter()
        .any(|t| target == *t || target.strip_prefix(t).is_some_and(|r| r.starts_with("::")))
}
