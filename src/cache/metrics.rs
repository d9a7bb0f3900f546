//! The cache's metrics: answers by log type and cache result, the pages and bytes held, the
//! refreshes of cached pages, the compressions, and each configured tenant's bytes, share
//! and evictions.

use prometheus::{IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Registry};

use super::{CacheResult, Refresh};
use crate::domain::LogType;
use crate::encoding::Coding;
use crate::metrics::{counter_vec, gauge, gauge_vec};

pub struct CacheMetrics {
    /// `logproxy_cache_requests_total` by `LogType::ALL` index and `CacheResult::LABELS`
    /// index, ready.
    requests: [[IntCounter; CacheResult::LABELS.len()]; LogType::ALL.len()],
    entries: IntGauge,
    bytes: IntGauge,
    /// `logproxy_cache_refreshes_total` by `Refresh::LABELS` index.
    refreshes: [IntCounter; Refresh::LABELS.len()],
    compressions: IntCounterVec,
    tenant_bytes: IntGaugeVec,
    tenant_share: IntGaugeVec,
    tenant_evictions: IntCounterVec,
}

impl CacheMetrics {
    /// The families, every bounded label value created now (dashboards see zeros).
    pub fn register(registry: &Registry) -> Self {
        let requests = counter_vec(
            registry,
            "logproxy_cache_requests_total",
            "Log requests by cache result: hit, miss, stale, coalesced, shared (a page from the fleet).",
            &["log_type", "result"],
        );
        let refreshes = counter_vec(
            registry,
            "logproxy_cache_refreshes_total",
            "Queries that refreshed a cached page, by kind: delta (its newest rows, merged in) or full.",
            &["kind"],
        );
        let compressions = counter_vec(
            registry,
            "logproxy_compressions_total",
            "Bodies compressed, by encoding: once per cached view and encoding; hits reuse them.",
            &["encoding"],
        );
        for coding in Coding::ALL {
            compressions.with_label_values(&[coding.name()]);
        }
        Self {
            requests: LogType::ALL.map(|log_type| {
                CacheResult::LABELS
                    .map(|result| requests.with_label_values(&[log_type.as_str(), result]))
            }),
            entries: gauge(registry, "logproxy_cache_entries", "Pages held by the cache."),
            bytes: gauge(registry, "logproxy_cache_bytes", "Bytes held by the cache."),
            refreshes: Refresh::LABELS.map(|kind| refreshes.with_label_values(&[kind])),
            compressions,
            tenant_bytes: gauge_vec(
                registry,
                "logproxy_tenant_cache_bytes",
                "Bytes of the cached pages of each configured tenant.",
                &["tenant"],
            ),
            tenant_share: gauge_vec(
                registry,
                "logproxy_tenant_cache_share_bytes",
                "Each tenant's share of the cache (cache.tenant_share x cache.max_bytes): past it, its pages evict only its own.",
                &["tenant"],
            ),
            tenant_evictions: counter_vec(
                registry,
                "logproxy_tenant_cache_evictions_total",
                "Pages of each tenant evicted to make room in the cache's byte budget.",
                &["tenant"],
            ),
        }
    }

    /// Counts one answer of `log_type` in `logproxy_cache_requests_total`.
    pub fn count(&self, log_type: LogType, result: CacheResult) {
        // `LogType::ALL` and `CacheResult::LABELS` are in declaration order.
        self.requests[log_type as usize][result as usize].inc();
    }

    pub fn count_refresh(&self, kind: Refresh) {
        self.refreshes[kind as usize].inc();
    }

    pub fn count_compression(&self, coding: Coding) {
        self.compressions.with_label_values(&[coding.name()]).inc();
    }

    /// The pages and bytes the cache holds, as a scrape reads them.
    pub fn set_usage(&self, entries: u64, bytes: u64) {
        self.entries.set(entries as i64);
        self.bytes.set(bytes as i64);
    }

    /// Creates the series of a configured tenant (zeros until something happens), with its
    /// cache share.
    pub fn add_tenant(&self, name: &str, share_bytes: u64) {
        self.tenant_bytes.with_label_values(&[name]);
        self.tenant_evictions.with_label_values(&[name]);
        self.tenant_share
            .with_label_values(&[name])
            .set(share_bytes as i64);
    }

    /// A tenant's bytes and evictions so far, as a scrape reads them.
    pub fn set_tenant_usage(&self, name: &str, bytes: u64, evictions: u64) {
        self.tenant_bytes
            .with_label_values(&[name])
            .set(bytes as i64);
        let counted = self.tenant_evictions.with_label_values(&[name]);
        counted.inc_by(evictions.saturating_sub(counted.get()));
    }

    /// Drops the series of a tenant a reload removed.
    pub fn remove_tenant(&self, name: &str) {
        let _ = self.tenant_bytes.remove_label_values(&[name]);
        let _ = self.tenant_share.remove_label_values(&[name]);
        let _ = self.tenant_evictions.remove_label_values(&[name]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::Metrics;

    fn series(metrics: &Metrics, name: &str) -> Option<f64> {
        logproxy_testkit::metric(&metrics.render(), name)
    }

    #[test]
    fn answers_count_by_log_type_and_result_from_zero() {
        let (a, b) = (Metrics::new(), Metrics::new());
        let (cache_a, _cache_b) = (
            CacheMetrics::register(a.registry()),
            CacheMetrics::register(b.registry()),
        );
        cache_a.count(LogType::Runtime, CacheResult::Hit);
        cache_a.count(LogType::Requests, CacheResult::Coalesced);
        let hit = r#"logproxy_cache_requests_total{log_type="runtime",result="hit"}"#;
        let coalesced = r#"logproxy_cache_requests_total{log_type="requests",result="coalesced"}"#;
        assert_eq!(
            (series(&a, hit), series(&a, coalesced)),
            (Some(1.0), Some(1.0))
        );
        assert_eq!(series(&b, hit), Some(0.0), "zero from the start");
    }
}
