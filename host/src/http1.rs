//! The public listener's HTTP server: HTTP/1.1 only, one small task per connection.
//!
//! Browsers reach the public API over HTTP/1.1 (`EventSource` included), usually behind a
//! proxy, so the public listener does without HTTP/2 detection: the per-connection state
//! of a plain `http1` connection is smaller than axum's auto (HTTP/1 + HTTP/2) one, which
//! matters with tens of thousands of idle streams. Accepted sockets get `TCP_NODELAY`.
//! Graceful shutdown: stop accepting, ask every connection to finish its response (open
//! streams end on their own when the hub tells them to), wait for them all.

use std::future::Future;
use std::pin::pin;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tower::ServiceExt;

/// Serve `app` on `listener` until `shutdown` resolves and every connection has finished.
pub async fn serve(listener: TcpListener, app: Router, shutdown: impl Future<Output = ()>) {
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut shutdown = pin!(shutdown);
    loop {
        let tcp = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((tcp, _)) => tcp,
                Err(e) => {
                    // Out of file descriptors and the like: back off instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = &mut shutdown => break,
        };
        let _ = tcp.set_nodelay(true);
        let service = app
            .clone()
            .map_request(|req: hyper::Request<Incoming>| req.map(Body::new));
        let mut stop = stop_rx.clone();
        tokio::spawn(async move {
            let builder = hyper::server::conn::http1::Builder::new();
            let mut conn = pin!(
                builder
                    .serve_connection(TokioIo::new(tcp), TowerToHyperService::new(service))
                    .with_upgrades()
            );
            tokio::select! {
                _ = conn.as_mut() => return,
                _ = stop.wait_for(|s| *s) => conn.as_mut().graceful_shutdown(),
            }
            let _ = conn.await;
            drop(stop);
        });
    }
    drop(listener);
    let _ = stop_tx.send(true);
    drop(stop_rx);
    // Every connection task holds a receiver; `closed` resolves when the last one is gone.
    stop_tx.closed().await;
}
