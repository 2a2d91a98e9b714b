//! The HTTP listeners' server: HTTP/1.1 only, one small task per connection, with the
//! limits a public listener needs against clients that never finish.
//!
//! Browsers reach the public API over HTTP/1.1 (`EventSource` included), usually behind a
//! proxy, so the public listener does without HTTP/2 detection: the per-connection state
//! of a plain `http1` connection is smaller than axum's auto (HTTP/1 + HTTP/2) one, which
//! matters with tens of thousands of idle streams. Accepted sockets get `TCP_NODELAY`.
//!
//! Limits (the `[listener]` table, [`ListenerSettings`]):
//! * **Header-read timeout**: a connection must deliver a complete request head within
//!   it, from accept and again between keep-alive requests (hyper's timer restarts when it
//!   waits for the next head), so it is also the idle keep-alive timeout. Half-sent
//!   requests and silent sockets are closed.
//! * **Connection cap**, below the process's file limit ([`crate::fd_limit`]): over it, a
//!   new connection gets a canned `503` (JSON error shape) and is closed at once, without
//!   an accept spin; the descriptors left over keep the admin listener and the link alive.
//! * **Write-stall timeout** ([`crate::write_stall`]): a peer that stops reading is cut.
//! * **Bounded graceful shutdown**: stop accepting, ask every connection to finish (open
//!   streams end when the hub tells them), wait at most the shutdown deadline, then
//!   return whatever is still open.
//!
//! Metrics: `gateway_http_connections{listener}` (gauge),
//! `gateway_http_connections_refused_total{listener}` (over the cap),
//! `gateway_http_header_timeouts_total{listener}`, `gateway_http_write_stalls_total`.

use std::future::Future;
use std::pin::pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use serde::Deserialize;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tower::ServiceExt;

use crate::write_stall::StallGuard;

/// Pause after a failed `accept` (out of descriptors and the like).
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// Answer to a connection over the cap: the API's JSON error shape, then close.
fn over_cap_answer() -> String {
    let body = serde_json::json!({
        "version": "1.0",
        "error": {
            "code": "too_many_connections",
            "message": "the listener is at its connection cap; retry later",
        },
        "traceId": crate::api_error::new_trace_id(),
    })
    .to_string();
    format!(
        "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\nretry-after: 5\r\nconnection: close\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    )
}

/// Listener limits (the `[listener]` table of the configuration file).
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "kebab-case")]
pub struct ListenerSettings {
    /// A request head must arrive within this (from accept, and between keep-alive
    /// requests), in milliseconds.
    pub header_read_timeout_ms: u64,
    /// Concurrent connections on the public listener; 0: derived from the file limit.
    pub max_connections: usize,
    /// Concurrent connections on the admin listener.
    pub admin_max_connections: usize,
    /// A write pending this long (the peer stopped reading) closes the connection, in ms.
    pub write_stall_timeout_ms: u64,
}

impl Default for ListenerSettings {
    fn default() -> Self {
        ListenerSettings {
            header_read_timeout_ms: 10_000,
            max_connections: 0,
            admin_max_connections: 64,
            write_stall_timeout_ms: 30_000,
        }
    }
}

/// The limits of one listener, resolved.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Name in logs and metric labels (`public`, `admin`).
    pub name: &'static str,
    pub header_read_timeout: Duration,
    pub max_connections: usize,
    pub write_stall_timeout: Duration,
    pub shutdown_timeout: Duration,
}

impl Limits {
    /// Limits for a listener called `name` with `max_connections`; graceful shutdown waits at
    /// most `shutdown_timeout` (`[server] shutdown-timeout-ms`) for its connections.
    pub fn new(
        name: &'static str,
        settings: &ListenerSettings,
        max_connections: usize,
        shutdown_timeout: Duration,
    ) -> Limits {
        Limits {
            name,
            header_read_timeout: Duration::from_millis(settings.header_read_timeout_ms.max(1)),
            max_connections: max_connections.max(1),
            write_stall_timeout: Duration::from_millis(settings.write_stall_timeout_ms.max(1)),
            shutdown_timeout,
        }
    }
}

/// Counts a connection while it lives.
struct ConnectionSlot {
    open: Arc<AtomicUsize>,
    name: &'static str,
}

impl Drop for ConnectionSlot {
    fn drop(&mut self) {
        let now = self.open.fetch_sub(1, Ordering::Relaxed) - 1;
        metrics::gauge!("gateway_http_connections", "listener" => self.name).set(now as f64);
    }
}

/// Serve `app` on `listener` until `shutdown` resolves and every connection has finished,
/// or the shutdown deadline has passed.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    limits: Limits,
    shutdown: impl Future<Output = ()>,
) {
    let (stop_tx, stop_rx) = watch::channel(false);
    let open = Arc::new(AtomicUsize::new(0));
    let mut shutdown = pin!(shutdown);
    loop {
        let tcp = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((tcp, _)) => tcp,
                Err(e) => {
                    // Out of file descriptors and the like: back off instead of spinning.
                    tracing::warn!(listener = limits.name, error = %e, "accept failed");
                    tokio::time::sleep(ACCEPT_BACKOFF).await;
                    continue;
                }
            },
            _ = &mut shutdown => break,
        };
        let Some(slot) = take_slot(&open, &limits) else {
            refuse(tcp, limits.name);
            continue;
        };
        let service = app
            .clone()
            .map_request(|req: hyper::Request<Incoming>| req.map(Body::new));
        tokio::spawn(connection(
            tcp,
            TowerToHyperService::new(service),
            limits.clone(),
            stop_rx.clone(),
            slot,
        ));
    }
    drop(listener);
    let _ = stop_tx.send(true);
    drop(stop_rx);
    // Every connection task holds a receiver; `closed` resolves when the last one is gone.
    if tokio::time::timeout(limits.shutdown_timeout, stop_tx.closed())
        .await
        .is_err()
    {
        tracing::warn!(
            listener = limits.name,
            open = open.load(Ordering::Relaxed),
            deadline = ?limits.shutdown_timeout,
            "shutdown deadline passed; closing the remaining connections"
        );
    }
}

fn take_slot(open: &Arc<AtomicUsize>, limits: &Limits) -> Option<ConnectionSlot> {
    let now = open.fetch_add(1, Ordering::Relaxed);
    let slot = ConnectionSlot {
        open: open.clone(),
        name: limits.name,
    };
    if now >= limits.max_connections {
        return None; // dropping `slot` gives the count back
    }
    metrics::gauge!("gateway_http_connections", "listener" => limits.name).set((now + 1) as f64);
    Some(slot)
}

/// Over the cap: a canned 503 if the socket takes it at once, then close.
fn refuse(tcp: TcpStream, name: &'static str) {
    metrics::counter!("gateway_http_connections_refused_total", "listener" => name).increment(1);
    tracing::debug!(
        listener = name,
        "connection cap reached; refusing a connection"
    );
    let _ = tcp.try_write(over_cap_answer().as_bytes());
}

async fn connection<S>(
    tcp: TcpStream,
    service: S,
    limits: Limits,
    mut stop: watch::Receiver<bool>,
    _slot: ConnectionSlot,
) where
    S: hyper::service::Service<hyper::Request<Incoming>, Response = axum::response::Response>
        + Send,
    S::Future: Send + 'static,
    S::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let _ = tcp.set_nodelay(true);
    let io = TokioIo::new(StallGuard::new(tcp, limits.write_stall_timeout));
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout);
    let mut conn = pin!(builder.serve_connection(io, service).with_upgrades());
    let finished = tokio::select! {
        result = conn.as_mut() => Some(result),
        _ = stop.wait_for(|s| *s) => None,
    };
    let result = match finished {
        Some(result) => result,
        None => {
            conn.as_mut().graceful_shutdown();
            conn.await
        }
    };
    if let Err(e) = result
        && e.is_timeout()
    {
        metrics::counter!("gateway_http_header_timeouts_total", "listener" => limits.name)
            .increment(1);
    }
    drop(stop);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_parse_from_kebab_case_with_defaults() {
        let s: ListenerSettings =
            toml::from_str("header-read-timeout-ms = 500\nmax-connections = 7").expect("toml");
        assert_eq!((s.header_read_timeout_ms, s.max_connections), (500, 7));
        assert_eq!(s.write_stall_timeout_ms, 30_000);
        assert!(toml::from_str::<ListenerSettings>("nonsense = 1").is_err());
    }

    #[test]
    fn the_over_cap_answer_is_a_complete_json_response() {
        let text = over_cap_answer();
        let (head, body) = text.split_once("\r\n\r\n").expect("head and body");
        let len: usize = head
            .lines()
            .find_map(|l| l.strip_prefix("content-length: "))
            .and_then(|v| v.parse().ok())
            .expect("content-length");
        assert_eq!(body.len(), len);
        let v: serde_json::Value = serde_json::from_str(body).expect("json body");
        assert_eq!(v["error"]["code"], "too_many_connections");
        assert!(v["traceId"].is_string());
    }
}
