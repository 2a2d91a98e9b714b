//! Prometheus metrics: one process-wide recorder behind the `metrics` facade, rendered at
//! `/metrics`. Modules record with `metrics::counter!`/`histogram!`/`gauge!` directly.

use std::sync::OnceLock;

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

static HANDLE: OnceLock<Option<PrometheusHandle>> = OnceLock::new();

/// Latency buckets (seconds) from 10 µs to 10 s.
const LATENCY_BUCKETS: &[f64] = &[
    0.00001, 0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25,
    0.5, 1.0, 2.5, 10.0,
];

/// Install the recorder (once per process) and return the handle that renders it; `None`
/// if another recorder was installed first.
pub fn install() -> Option<PrometheusHandle> {
    HANDLE
        .get_or_init(|| {
            let builder = PrometheusBuilder::new()
                .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), LATENCY_BUCKETS);
            match builder {
                Ok(b) => b.install_recorder().ok(),
                Err(_) => None,
            }
        })
        .clone()
}

/// The Prometheus text exposition of every metric.
pub fn render() -> String {
    install().map(|h| h.render()).unwrap_or_default()
}
