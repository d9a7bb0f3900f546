//! The process's own Prometheus registry (not the global one, so that tests run many apps)
//! and its text exposition. Each module registers the families it records into, beside the
//! code that records them (Vector's `internal_events`): `TailMetrics`, `CacheMetrics`,
//! `ClickHouseMetrics`, `SlotMetrics`, `FleetMetrics`, `ActorMetrics`, `HttpMetrics`,
//! `lifecycle::Reloads`, `telemetry::DroppedLines`. This file registers the process's own
//! (its build, its resources) and the helpers that register a family in one call.

use prometheus::core::Collector;
use prometheus::{
    Encoder, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge,
    IntGaugeVec, Opts, Registry, TextEncoder,
};

/// Latency buckets in seconds, from 100 µs (a cache hit) to 10 s (a slow query).
pub const BUCKETS: &[f64] = &[
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    5.0, 10.0,
];

/// The registry; clones share it.
#[derive(Clone)]
pub struct Metrics {
    registry: Registry,
}

impl Metrics {
    /// A registry with the build's version and, on Linux, the process's resident memory,
    /// CPU time and open file descriptors.
    pub fn new() -> Self {
        let registry = Registry::new();
        let build = gauge_vec(
            &registry,
            "logproxy_build_info",
            "1, labelled with the build's version.",
            &["version"],
        );
        build.with_label_values(&[env!("CARGO_PKG_VERSION")]).set(1);
        #[cfg(target_os = "linux")]
        registry
            .register(Box::new(
                prometheus::process_collector::ProcessCollector::for_self(),
            ))
            .expect("unique metric");
        Self { registry }
    }

    /// The registry, for the modules to register their families in.
    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// The text exposition of every metric.
    pub fn render(&self) -> String {
        let mut out = Vec::new();
        TextEncoder::new()
            .encode(&self.registry.gather(), &mut out)
            .expect("encoding metrics to memory");
        String::from_utf8(out).expect("prometheus text is UTF-8")
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

/// Registers `metric` in `registry` and gives it back; a family registered twice panics.
pub fn register<M: Collector + Clone + 'static>(registry: &Registry, metric: M) -> M {
    registry
        .register(Box::new(metric.clone()))
        .expect("unique metric");
    metric
}

pub fn counter(registry: &Registry, name: &str, help: &str) -> IntCounter {
    register(registry, IntCounter::new(name, help).expect("valid metric"))
}

pub fn counter_vec(registry: &Registry, name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    let opts = Opts::new(name, help);
    register(
        registry,
        IntCounterVec::new(opts, labels).expect("valid metric"),
    )
}

pub fn gauge(registry: &Registry, name: &str, help: &str) -> IntGauge {
    register(registry, IntGauge::new(name, help).expect("valid metric"))
}

pub fn gauge_vec(registry: &Registry, name: &str, help: &str, labels: &[&str]) -> IntGaugeVec {
    let opts = Opts::new(name, help);
    register(
        registry,
        IntGaugeVec::new(opts, labels).expect("valid metric"),
    )
}

/// A histogram of `BUCKETS`.
pub fn histogram(registry: &Registry, name: &str, help: &str) -> Histogram {
    let opts = HistogramOpts::new(name, help).buckets(BUCKETS.to_vec());
    register(registry, Histogram::with_opts(opts).expect("valid metric"))
}

/// A histogram of `BUCKETS` by `labels`.
pub fn histogram_vec(registry: &Registry, name: &str, help: &str, labels: &[&str]) -> HistogramVec {
    let opts = HistogramOpts::new(name, help).buckets(BUCKETS.to_vec());
    register(
        registry,
        HistogramVec::new(opts, labels).expect("valid metric"),
    )
}
