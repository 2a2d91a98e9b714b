//! Keeps the link token out of the logs at every level.
//!
//! The token travels in the `Authorization` header of the upgrade request, and
//! `tungstenite` logs that whole request at trace level (`Request: "GET /link … Bearer
//! …"`). Our own code never logs the token ([`super::LinkToken`] redacts itself), so the
//! one leak is the client crates' trace output: [`may_log`] drops it. It is applied as a
//! per-layer filter in the binary's subscriber, so no `RUST_LOG` directive can turn it
//! back on.

use tracing::{Level, Metadata};

/// Targets whose trace output can carry the upgrade request (and so the token).
const HANDSHAKE_TARGETS: [&str; 2] = ["tungstenite", "tokio_tungstenite"];

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
