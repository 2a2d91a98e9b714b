//! Ping bookkeeping: RTT by traceId, and the zombie deadline.
//!
//! A link can die without a close (the TCP connection stays open, nothing arrives:
//! a "zombie"). Waiting for a close frame would hang forever, so every ping sets a
//! deadline: if the oldest unanswered ping is older than `pong_timeout`, the link is
//! declared dead. A pong answers its ping and every older one (the link is alive).

use std::collections::VecDeque;
use std::time::Duration;

use rand::Rng;
use tokio::time::Instant;

/// Unanswered pings kept at most (older ones are forgotten; the deadline of the
/// oldest kept one still fires).
const MAX_PENDING: usize = 64;

/// Outstanding pings of one connection.
#[derive(Debug)]
pub struct Heartbeat {
    prefix: String,
    counter: u64,
    pending: VecDeque<(String, Instant)>,
    pong_timeout: Duration,
}

impl Heartbeat {
    /// A fresh heartbeat with a random traceId prefix.
    pub fn new(pong_timeout: Duration) -> Self {
        Self {
            prefix: format!("ping-{:08x}", rand::rng().random::<u32>()),
            counter: 0,
            pending: VecDeque::new(),
            pong_timeout,
        }
    }

    /// Registers a ping sent at `now`; returns its traceId.
    pub fn ping(&mut self, now: Instant) -> String {
        self.counter += 1;
        let trace_id = format!("{}-{}", self.prefix, self.counter);
        if self.pending.len() >= MAX_PENDING {
            self.pending.pop_back();
        }
        self.pending.push_back((trace_id.clone(), now));
        trace_id
    }

    /// Matches a pong; returns the RTT when it answers one of our pings.
    pub fn pong(&mut self, trace_id: &str, now: Instant) -> Option<Duration> {
        let pos = self.pending.iter().position(|(id, _)| id == trace_id)?;
        let sent = self.pending[pos].1;
        self.pending.drain(..=pos);
        Some(now.saturating_duration_since(sent))
    }

    /// When the link must be declared dead, if a ping is outstanding.
    pub fn deadline(&self) -> Option<Instant> {
        self.pending
            .front()
            .map(|(_, sent)| *sent + self.pong_timeout)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pong_measures_rtt_and_clears_older_pings() {
        let t0 = Instant::now();
        let mut hb = Heartbeat::new(Duration::from_secs(10));
        let a = hb.ping(t0);
        let b = hb.ping(t0 + Duration::from_secs(5));
        assert_eq!(hb.deadline(), Some(t0 + Duration::from_secs(10)));
        let rtt = hb.pong(&b, t0 + Duration::from_millis(5_003));
        assert_eq!(rtt, Some(Duration::from_millis(3)));
        assert_eq!(hb.deadline(), None);
        assert_eq!(hb.pong(&a, t0), None);
        assert_eq!(hb.pong("stranger", t0), None);
    }
}
