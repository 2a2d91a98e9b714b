//! The console's time series: once a second a host task samples the link state, the events
//! taken from the upstream, the gateway→SSE latency percentiles of that second and the open
//! SSE streams into a fixed-size ring, served by `GET /admin/series`.
//!
//! Why a ring in the host rather than the page polling `/metrics`: the page must show the
//! last minutes the moment it opens (not only from when it was opened), per-second
//! percentiles need the raw latencies of that second (see [`super::latency`]), and the
//! memory must stay bounded whoever watches: [`CAPACITY`] samples of a few dozen bytes.

use std::collections::VecDeque;
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use serde::Serialize;

use super::latency::LatencyWindow;
use crate::link::{LinkHandle, LinkState};
use crate::policy::version::unix_ms;
use crate::sse::StreamHub;

/// Samples kept: 10 minutes at one per second.
pub const CAPACITY: usize = 600;
/// Time between samples.
pub const INTERVAL: Duration = Duration::from_secs(1);

/// One second of the host's life.
#[derive(Debug, Clone, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Sample {
    /// When the sample was taken, milliseconds since the Unix epoch.
    pub t_ms: u64,
    /// The link state at that moment (`idle`, `connecting`, `connected`, `reconnecting`).
    pub link: &'static str,
    /// Events taken from the upstream since the previous sample.
    pub events_in: u64,
    /// `events_in` over the time since the previous sample.
    pub events_per_sec: f64,
    /// Frames whose gateway→SSE latency was measured in that interval.
    pub latency_count: u64,
    /// Latency percentiles of those frames, in milliseconds (`null` when there were none).
    pub p50_ms: Option<f64>,
    pub p90_ms: Option<f64>,
    pub p99_ms: Option<f64>,
    /// Open SSE streams at that moment.
    pub sse_clients: usize,
}

/// The ring of samples.
pub struct Series {
    samples: Mutex<VecDeque<Sample>>,
    capacity: usize,
}

impl Series {
    /// An empty ring holding at most `capacity` samples.
    pub fn new(capacity: usize) -> Series {
        Series {
            samples: Mutex::new(VecDeque::with_capacity(capacity)),
            capacity: capacity.max(1),
        }
    }

    /// The most samples it keeps.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Add a sample, dropping the oldest when full.
    pub fn push(&self, sample: Sample) {
        let mut samples = self.samples.lock();
        while samples.len() >= self.capacity {
            samples.pop_front();
        }
        samples.push_back(sample);
    }

    /// The samples taken after `since_ms` (all of them for `None`), oldest first.
    pub fn since(&self, since_ms: Option<u64>) -> Vec<Sample> {
        let samples = self.samples.lock();
        match since_ms {
            None => samples.iter().cloned().collect(),
            Some(since) => samples.iter().filter(|s| s.t_ms > since).cloned().collect(),
        }
    }

    /// Start the sampler: every [`INTERVAL`] it reads `link` and `hub` (and empties the
    /// hub's latency window) into a new ring of [`CAPACITY`], until the ring is dropped.
    pub fn start(link: LinkHandle, hub: StreamHub) -> Arc<Series> {
        let series = Arc::new(Series::new(CAPACITY));
        tokio::spawn(sample_every(INTERVAL, Arc::downgrade(&series), link, hub));
        series
    }
}

/// The sampler task; it ends when the series is dropped.
async fn sample_every(every: Duration, series: Weak<Series>, link: LinkHandle, hub: StreamHub) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // The first tick completes at once: it sets the baseline, no sample.
    tick.tick().await;
    let window = hub.latency_window();
    window.take();
    let mut last_events = link.stats().events;
    let mut last_at = Instant::now();
    loop {
        tick.tick().await;
        let Some(series) = series.upgrade() else {
            return;
        };
        let events = link.stats().events;
        let now = Instant::now();
        series.push(sample(
            link.state(),
            events.saturating_sub(last_events),
            now.duration_since(last_at),
            &window,
            hub.client_count(),
        ));
        last_events = events;
        last_at = now;
    }
}

fn sample(
    state: LinkState,
    events_in: u64,
    elapsed: Duration,
    window: &LatencyWindow,
    sse_clients: usize,
) -> Sample {
    let latency = window.take();
    let secs = elapsed.as_secs_f64();
    Sample {
        t_ms: unix_ms(),
        link: state.as_str(),
        events_in,
        events_per_sec: if secs > 0.0 {
            events_in as f64 / secs
        } else {
            0.0
        },
        latency_count: latency.map_or(0, |l| l.count),
        p50_ms: latency.map(|l| l.p50_ms),
        p90_ms: latency.map(|l| l.p90_ms),
        p99_ms: latency.map(|l| l.p99_ms),
        sse_clients,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(t_ms: u64) -> Sample {
        sample(
            LinkState::Connected,
            t_ms,
            Duration::from_secs(1),
            &LatencyWindow::default(),
            0,
        )
        .with_t(t_ms)
    }

    impl Sample {
        fn with_t(mut self, t_ms: u64) -> Sample {
            self.t_ms = t_ms;
            self
        }
    }

    #[test]
    fn the_ring_keeps_the_newest_capacity_samples() {
        let series = Series::new(CAPACITY);
        for t in 1..=(CAPACITY as u64 + 150) {
            series.push(at(t));
        }
        let all = series.since(None);
        assert_eq!(all.len(), CAPACITY);
        assert_eq!(all[0].t_ms, 151, "the oldest were dropped");
        assert_eq!(all[CAPACITY - 1].t_ms, CAPACITY as u64 + 150);
        let tail = series.since(Some(CAPACITY as u64 + 140));
        assert_eq!(
            tail.iter().map(|s| s.t_ms).collect::<Vec<_>>(),
            (CAPACITY as u64 + 141..=CAPACITY as u64 + 150).collect::<Vec<_>>()
        );
        assert!(series.since(Some(u64::MAX)).is_empty());
    }

    #[test]
    fn a_sample_carries_rate_and_percentiles() {
        let window = LatencyWindow::default();
        window.record(Duration::from_millis(2));
        let s = sample(
            LinkState::Reconnecting,
            10,
            Duration::from_millis(500),
            &window,
            3,
        );
        assert_eq!(s.link, "reconnecting");
        assert_eq!(s.events_per_sec, 20.0);
        assert_eq!(s.latency_count, 1);
        assert!(s.p50_ms.is_some_and(|p| (p - 2.0).abs() < 0.25));
        assert_eq!(s.sse_clients, 3);
        let empty = sample(LinkState::Connected, 0, INTERVAL, &window, 0);
        assert_eq!((empty.latency_count, empty.p99_ms), (0, None));
    }
}
