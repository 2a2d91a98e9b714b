//! A connection whose peer stops reading is cut after a bounded stall.
//!
//! A client that stops reading fills its socket buffers; every write then stays pending
//! and the connection (with whatever its response still holds) would live for as long as
//! the peer keeps TCP open. [`StallGuard`] wraps the socket: when a write has been pending
//! for longer than the stall timeout, the write fails with `TimedOut`, hyper closes the
//! connection and the stream is unsubscribed. Counted in
//! `gateway_http_write_stalls_total`.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::{Instant, Sleep};

/// An IO whose writes may not stay pending longer than `timeout`.
pub struct StallGuard<T> {
    io: T,
    timeout: Duration,
    /// The stall timer, allocated on the first pending write and reused after.
    timer: Option<Pin<Box<Sleep>>>,
    /// Whether a write is pending (the timer runs).
    armed: bool,
}

impl<T> StallGuard<T> {
    /// Wrap `io`.
    pub fn new(io: T, timeout: Duration) -> Self {
        StallGuard {
            io,
            timeout,
            timer: None,
            armed: false,
        }
    }

    /// The wrapped IO.
    pub fn get_ref(&self) -> &T {
        &self.io
    }

    /// Account for one write attempt's result: clear the timer on progress, arm or check
    /// it while pending.
    fn watch<R>(
        &mut self,
        cx: &mut Context<'_>,
        result: Poll<io::Result<R>>,
    ) -> Poll<io::Result<R>> {
        if result.is_ready() {
            self.armed = false;
            return result;
        }
        let deadline = Instant::now() + self.timeout;
        let timer = self
            .timer
            .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline)));
        if !self.armed {
            timer.as_mut().reset(deadline);
            self.armed = true;
        }
        ready!(timer.as_mut().poll(cx));
        metrics::counter!("gateway_http_write_stalls_total").increment(1);
        tracing::debug!(timeout = ?self.timeout, "closing a connection whose peer stopped reading");
        Poll::Ready(Err(io::Error::new(
            io::ErrorKind::TimedOut,
            "the peer stopped reading (write stall timeout)",
        )))
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for StallGuard<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_read(cx, buf)
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for StallGuard<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let result = Pin::new(&mut self.io).poll_write(cx, buf);
        self.watch(cx, result)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let result = Pin::new(&mut self.io).poll_write_vectored(cx, bufs);
        self.watch(cx, result)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let result = Pin::new(&mut self.io).poll_flush(cx);
        self.watch(cx, result)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[tokio::test]
    async fn a_write_pending_past_the_timeout_fails_and_progress_resets_it() {
        let (a, mut b) = tokio::io::duplex(64);
        let mut guarded = StallGuard::new(a, Duration::from_millis(200));
        // Progress: the peer reads, writes keep succeeding.
        for _ in 0..10 {
            guarded.write_all(&[1u8; 64]).await.expect("peer reads");
            let mut buf = [0u8; 64];
            b.read_exact(&mut buf).await.expect("read");
        }
        // The peer stops reading: the write fails with TimedOut instead of hanging.
        let result = tokio::time::timeout(Duration::from_secs(10), async {
            loop {
                guarded.write_all(&[1u8; 64]).await?;
            }
            #[allow(unreachable_code)]
            Ok::<(), io::Error>(())
        })
        .await
        .expect("the stall is cut within the timeout");
        assert_eq!(result.map_err(|e| e.kind()), Err(io::ErrorKind::TimedOut));
    }
}
