//! The gateway's own limits: at most `limit` sends per `window` on one connection
//! (Discord: 120 per 60 s, beyond which it closes with 4008), and the Identify pacing
//! (Discord: one Identify per 5 s per `max_concurrency` bucket; a single-shard process
//! is always in one bucket, so it spaces its own Identifies by the interval).

use std::collections::VecDeque;
use std::time::Duration;

use tokio::time::Instant;

/// A sliding-window send limiter for one gateway connection.
pub struct SendLimiter {
    limit: usize,
    window: Duration,
    sent: VecDeque<Instant>,
}

impl SendLimiter {
    pub fn new(limit: u32, window: Duration) -> Self {
        Self {
            limit: limit.max(1) as usize,
            window,
            sent: VecDeque::new(),
        }
    }

    /// When the next send is allowed (now, if there is room).
    pub fn next_allowed(&mut self, now: Instant) -> Instant {
        while self
            .sent
            .front()
            .is_some_and(|t| now.duration_since(*t) >= self.window)
        {
            self.sent.pop_front();
        }
        if self.sent.len() < self.limit {
            now
        } else {
            self.sent.front().map_or(now, |t| *t + self.window)
        }
    }

    /// Waits for room, then counts one send.
    pub async fn acquire(&mut self) {
        let at = self.next_allowed(Instant::now());
        tokio::time::sleep_until(at).await;
        let now = Instant::now();
        self.next_allowed(now);
        self.sent.push_back(now);
    }
}

/// Spaces Identify payloads by the identify interval.
pub struct IdentifyGate {
    interval: Duration,
    last: Option<Instant>,
}

impl IdentifyGate {
    pub fn new(interval: Duration) -> Self {
        Self {
            interval,
            last: None,
        }
    }

    /// Waits until an Identify is allowed and records it.
    pub async fn acquire(&mut self) {
        if let Some(last) = self.last {
            tokio::time::sleep_until(last + self.interval).await;
        }
        self.last = Some(Instant::now());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_send_window_is_never_exceeded() {
        let window = Duration::from_millis(200);
        let mut limiter = SendLimiter::new(3, window);
        let start = Instant::now();
        for _ in 0..3 {
            limiter.acquire().await;
        }
        assert!(start.elapsed() < window, "the first 3 go at once");
        limiter.acquire().await;
        assert!(start.elapsed() >= window, "the 4th waits for the window");
    }

    #[tokio::test]
    async fn identifies_are_spaced() {
        let mut gate = IdentifyGate::new(Duration::from_millis(100));
        let start = Instant::now();
        gate.acquire().await;
        assert!(start.elapsed() < Duration::from_millis(100));
        gate.acquire().await;
        assert!(start.elapsed() >= Duration::from_millis(100));
    }
}
