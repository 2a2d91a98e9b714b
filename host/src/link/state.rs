//! Link state and counters, readable from outside the link task.
//!
//! The state goes through a `watch` channel (for `/readyz` and for tests that wait on a
//! transition); counters are atomics mirrored into the `metrics` facade, so they can be
//! read without a global recorder (tests) and exported with one (production).

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Where the link is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LinkState {
    /// Not started, or shut down.
    Idle,
    /// First connection attempts (never connected yet).
    Connecting,
    /// Handshake done, events flowing.
    Connected,
    /// The link was lost; backing off or reconnecting.
    Reconnecting,
}

impl LinkState {
    /// The value of the `gateway_link_state` gauge.
    pub fn gauge_value(self) -> f64 {
        match self {
            Self::Idle => 0.0,
            Self::Connecting => 1.0,
            Self::Connected => 2.0,
            Self::Reconnecting => 3.0,
        }
    }

    /// Lower-case name, as shown in `/readyz`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Idle => "idle",
            Self::Connecting => "connecting",
            Self::Connected => "connected",
            Self::Reconnecting => "reconnecting",
        }
    }
}

/// Counters of one link client.
#[derive(Debug, Default)]
pub(crate) struct LinkStats {
    pub connects: AtomicU64,
    pub reconnects: AtomicU64,
    pub auth_failures: AtomicU64,
    pub events: AtomicU64,
    pub duplicates: AtomicU64,
    pub malformed: AtomicU64,
    pub unknown: AtomicU64,
    pub gaps: AtomicU64,
    pub resyncs: AtomicU64,
    pub oversize: AtomicU64,
    pub zombies: AtomicU64,
    pub rtt_samples: AtomicU64,
    /// Last RTT in microseconds.
    pub rtt_last_us: AtomicU64,
}

/// A copy of the counters at one instant.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StatsSnapshot {
    /// Handshakes completed (hello received).
    pub connects: u64,
    /// Established links that were lost.
    pub reconnects: u64,
    /// Upgrades answered 401.
    pub auth_failures: u64,
    /// Events published to the bus.
    pub events: u64,
    /// Events skipped as already seen (replay overlap).
    pub duplicates: u64,
    /// Frames that could not be decoded.
    pub malformed: u64,
    /// Frames with an unknown op.
    pub unknown: u64,
    /// Gaps that could not be replayed (new session, buffer overrun, seq hole).
    pub gaps: u64,
    /// Sequence anomalies that made the link resynchronise (jump, backwards seq,
    /// renumbered session).
    pub resyncs: u64,
    /// Inbound frames over the size limit (each cost a reconnect).
    pub oversize: u64,
    /// Links closed by zombie detection.
    pub zombies: u64,
    /// Pongs received (RTT samples).
    pub rtt_samples: u64,
    /// Last RTT measured.
    pub last_rtt: Option<Duration>,
}

impl LinkStats {
    pub fn bump(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }

    pub fn record_rtt(&self, rtt: Duration) {
        let us = u64::try_from(rtt.as_micros()).unwrap_or(u64::MAX);
        self.rtt_last_us.store(us, Ordering::Relaxed);
        self.rtt_samples.fetch_add(1, Ordering::Relaxed);
        metrics::histogram!("gateway_link_rtt_seconds").record(rtt.as_secs_f64());
    }

    pub fn snapshot(&self) -> StatsSnapshot {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        let samples = get(&self.rtt_samples);
        StatsSnapshot {
            connects: get(&self.connects),
            reconnects: get(&self.reconnects),
            auth_failures: get(&self.auth_failures),
            events: get(&self.events),
            duplicates: get(&self.duplicates),
            malformed: get(&self.malformed),
            unknown: get(&self.unknown),
            gaps: get(&self.gaps),
            resyncs: get(&self.resyncs),
            oversize: get(&self.oversize),
            zombies: get(&self.zombies),
            rtt_samples: samples,
            last_rtt: (samples > 0).then(|| Duration::from_micros(get(&self.rtt_last_us))),
        }
    }
}
