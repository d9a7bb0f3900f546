//! One owned Prometheus registry and the handles the service records into.

use std::cell::RefCell;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use crate::cache::{CacheResult, Refresh};
use crate::clickhouse::replicas::{AttemptKind, ReplicaMetrics};
use crate::clickhouse::QueryError;
use crate::domain::LogType;
use crate::encoding::Coding;
use crate::fleet::{FleetMetrics, Op};
use crate::slots::TenantSlotMetrics;
use actix_web::http::StatusCode;
use prometheus::core::Collector;
use prometheus::{
    Encoder, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge,
    IntGaugeVec, Opts, Registry, TextEncoder,
};

/// Latency buckets in seconds, from 100 µs (a cache hit) to 10 s (a slow query).
const BUCKETS: &[f64] = &[
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    5.0, 10.0,
];

/// Tells apart the `Metrics` of one process (tests build many), for the per-thread handles.
static NEXT_ID: AtomicU64 = AtomicU64::new(0);

/// At most this many (route, status) handles are kept per thread; past it they start over.
const HTTP_HANDLES_PER_THREAD: usize = 64;

thread_local! {
    /// The `http_*` children this thread has used, so a request finds its series without
    /// hashing label values or taking the vec's lock.
    static HTTP_HANDLES: RefCell<Vec<HttpHandles>> = const { RefCell::new(Vec::new()) };
}

struct HttpHandles {
    metrics: u64,
    route: Box<str>,
    status: u16,
    requests: IntCounter,
    duration: Histogram,
}

#[derive(Clone)]
pub struct Metrics {
    /// Shared by the clones of one `Metrics::new` (they share their series too).
    id: u64,
    registry: Registry,
    /// `cache_requests` by `LogType::ALL` index and `CacheResult::LABELS` index, ready.
    cache_counts: Arc<[[IntCounter; CacheResult::LABELS.len()]; LogType::ALL.len()]>,
    pub http_requests: IntCounterVec,
    pub http_duration: HistogramVec,
    pub cache_requests: IntCounterVec,
    pub cache_entries: IntGauge,
    pub cache_bytes: IntGauge,
    pub query_duration: HistogramVec,
    pub clickhouse_errors: IntCounterVec,
    pub rate_limited: IntCounter,
    /// Set from `telemetry::dropped_lines` at each scrape.
    pub log_lines_dropped: IntCounter,
    pub app_actors: IntGauge,
    pub replica_up: IntGaugeVec,
    pub replica_suspect: IntGaugeVec,
    pub clickhouse_attempts: IntCounterVec,
    pub query_slots_in_use: IntGauge,
    pub query_queue_wait: Histogram,
    pub overloaded: IntCounterVec,
    pub config_reloads: IntCounterVec,
    pub compressions: IntCounterVec,
    pub redis_errors: IntCounterVec,
    pub redis_up: IntGauge,
    pub tenant_cache_bytes: IntGaugeVec,
    pub tenant_cache_share: IntGaugeVec,
    pub tenant_cache_evictions: IntCounterVec,
    pub tenant_slots_in_use: IntGaugeVec,
    pub tenant_slots_limit: IntGaugeVec,
    pub tenant_queue_wait: HistogramVec,
    /// `logproxy_cache_refreshes_total` by `Refresh::LABELS` index.
    pub cache_refreshes: [IntCounter; Refresh::LABELS.len()],
}

/// Why a request was answered 503 `overloaded`: label values of `logproxy_overloaded_total`.
#[derive(Debug, Clone, Copy)]
pub enum Overload {
    /// No query slot (of the app or of the process) within `queue_timeout_ms`.
    QuerySlots,
    /// The app's mailbox held `actors.mailbox_capacity` requests.
    Mailbox,
}

impl Overload {
    pub const LABELS: [&'static str; 2] = ["query_slots", "mailbox"];
}

/// `result` label values of `logproxy_config_reloads_total`.
pub const RELOAD_RESULTS: [&str; 2] = ["ok", "error"];

fn register<M: Collector + Clone + 'static>(registry: &Registry, metric: M) -> M {
    registry
        .register(Box::new(metric.clone()))
        .expect("unique metric");
    metric
}

impl Metrics {
    pub fn new() -> Self {
        let registry = Registry::new();
        let counter = |name: &str, help: &str, labels: &[&str]| {
            let c = IntCounterVec::new(Opts::new(name, help), labels).expect("valid metric");
            registry
                .register(Box::new(c.clone()))
                .expect("unique metric");
            c
        };
        let histogram = |name: &str, help: &str, labels: &[&str]| {
            let opts = HistogramOpts::new(name, help).buckets(BUCKETS.to_vec());
            let h = HistogramVec::new(opts, labels).expect("valid metric");
            registry
                .register(Box::new(h.clone()))
                .expect("unique metric");
            h
        };
        let gauge = |name: &str, help: &str| {
            let g = IntGauge::new(name, help).expect("valid metric");
            registry
                .register(Box::new(g.clone()))
                .expect("unique metric");
            g
        };
        let gauge_vec = |name: &str, help: &str| {
            let g = IntGaugeVec::new(Opts::new(name, help), &["tenant"]).expect("valid metric");
            registry
                .register(Box::new(g.clone()))
                .expect("unique metric");
            g
        };
        let rate_limited = IntCounter::new(
            "logproxy_rate_limited_total",
            "Requests refused with 429 by their app's rate limit.",
        )
        .expect("valid metric");
        registry
            .register(Box::new(rate_limited.clone()))
            .expect("unique metric");
        let log_lines_dropped = IntCounter::new(
            "logproxy_log_lines_dropped_total",
            "Log lines lost: a write to stderr failed (a closed pipe, a full disk), or the writer was behind (a pipe nobody reads).",
        )
        .expect("valid metric");
        registry
            .register(Box::new(log_lines_dropped.clone()))
            .expect("unique metric");
        let cache_requests = counter(
            "logproxy_cache_requests_total",
            "Log requests by cache result: hit, miss, stale, coalesced, shared (a page from the fleet).",
            &["log_type", "result"],
        );
        // Every bounded label value exists from the start, so dashboards see zeros.
        let cache_counts = Arc::new(LogType::ALL.map(|log_type| {
            CacheResult::LABELS
                .map(|result| cache_requests.with_label_values(&[log_type.as_str(), result]))
        }));
        let metrics = Self {
            id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
            cache_counts,
            http_requests: counter(
                "logproxy_http_requests_total",
                "HTTP requests by route pattern and status.",
                &["route", "status"],
            ),
            http_duration: histogram(
                "logproxy_http_request_duration_seconds",
                "Time from request to response, by route pattern.",
                &["route"],
            ),
            cache_requests,
            cache_entries: gauge("logproxy_cache_entries", "Pages held by the cache."),
            cache_bytes: gauge("logproxy_cache_bytes", "Bytes held by the cache."),
            query_duration: histogram(
                "logproxy_clickhouse_query_duration_seconds",
                "ClickHouse log queries by log type and outcome (ok or an error kind).",
                &["log_type", "outcome"],
            ),
            clickhouse_errors: counter(
                "logproxy_clickhouse_errors_total",
                "Failed ClickHouse queries by kind: unavailable, timeout, exception, protocol.",
                &["kind"],
            ),
            rate_limited,
            log_lines_dropped,
            app_actors: gauge("logproxy_app_actors", "Live per-app actors."),
            replica_up: {
                let opts = Opts::new(
                    "logproxy_clickhouse_replica_up",
                    "1 while the replica is healthy or suspect (0 while down or not probed yet), by shard (index in clickhouse.shards, 0 without) and replica (index in its urls).",
                );
                let g = IntGaugeVec::new(opts, &["shard", "replica"]).expect("valid metric");
                registry
                    .register(Box::new(g.clone()))
                    .expect("unique metric");
                g
            },
            replica_suspect: {
                let opts = Opts::new(
                    "logproxy_clickhouse_replica_suspect",
                    "1 while the replica is suspect: its last probes timed out, fewer than probe_failures_to_down in a row (it still counts as up), by shard and replica.",
                );
                let g = IntGaugeVec::new(opts, &["shard", "replica"]).expect("valid metric");
                registry
                    .register(Box::new(g.clone()))
                    .expect("unique metric");
                g
            },
            clickhouse_attempts: counter(
                "logproxy_clickhouse_attempts_total",
                "Queries sent to a replica, by kind: first, retry (after a failure), hedge.",
                &["shard", "replica", "kind"],
            ),
            query_slots_in_use: gauge(
                "logproxy_query_slots_in_use",
                "Query slots of the process held now (of clickhouse.max_concurrent_queries).",
            ),
            query_queue_wait: register(
                &registry,
                Histogram::with_opts(
                    HistogramOpts::new(
                        "logproxy_query_queue_wait_seconds",
                        "Time a miss waited for its query slots (the app's, then the process's).",
                    )
                    .buckets(BUCKETS.to_vec()),
                )
                .expect("valid metric"),
            ),
            overloaded: counter(
                "logproxy_overloaded_total",
                "Requests answered 503 overloaded, by reason: query_slots, mailbox.",
                &["reason"],
            ),
            config_reloads: counter(
                "logproxy_config_reloads_total",
                "Configuration reloads on SIGHUP, by result: ok, error.",
                &["result"],
            ),
            compressions: counter(
                "logproxy_compressions_total",
                "Bodies compressed, by encoding: once per cached view and encoding; hits reuse them.",
                &["encoding"],
            ),
            redis_errors: counter(
                "logproxy_redis_errors_total",
                "Redis calls that failed or outlasted redis.timeout_ms, by op: rate_limit, page_get, page_put, lock.",
                &["op"],
            ),
            redis_up: gauge(
                "logproxy_redis_up",
                "With redis.url: 1 while Redis answers, 0 while the process goes on alone.",
            ),
            tenant_cache_bytes: gauge_vec(
                "logproxy_tenant_cache_bytes",
                "Bytes of the cached pages of each configured tenant.",
            ),
            tenant_cache_share: gauge_vec(
                "logproxy_tenant_cache_share_bytes",
                "Each tenant's share of the cache (cache.tenant_share x cache.max_bytes): past it, its pages evict only its own.",
            ),
            tenant_cache_evictions: counter(
                "logproxy_tenant_cache_evictions_total",
                "Pages of each tenant evicted to make room in the cache's byte budget.",
                &["tenant"],
            ),
            tenant_slots_in_use: gauge_vec(
                "logproxy_tenant_query_slots_in_use",
                "Query slots each tenant holds now.",
            ),
            tenant_slots_limit: gauge_vec(
                "logproxy_tenant_query_slots_limit",
                "Query slots a tenant may hold at most (clickhouse.max_concurrent_queries_per_tenant).",
            ),
            tenant_queue_wait: histogram(
                "logproxy_tenant_queue_wait_seconds",
                "Time each tenant's misses waited for a query slot.",
                &["tenant"],
            ),
            cache_refreshes: {
                let refreshes = counter(
                    "logproxy_cache_refreshes_total",
                    "Queries that refreshed a cached page, by kind: delta (its newest rows, merged in) or full.",
                    &["kind"],
                );
                Refresh::LABELS.map(|kind| refreshes.with_label_values(&[kind]))
            },
            registry,
        };
        let build = register(
            &metrics.registry,
            IntGaugeVec::new(
                Opts::new(
                    "logproxy_build_info",
                    "1, labelled with the build's version.",
                ),
                &["version"],
            )
            .expect("valid metric"),
        );
        build.with_label_values(&[env!("CARGO_PKG_VERSION")]).set(1);
        // Resident memory, CPU time, open file descriptors of this process (Linux).
        #[cfg(target_os = "linux")]
        metrics
            .registry
            .register(Box::new(
                prometheus::process_collector::ProcessCollector::for_self(),
            ))
            .expect("unique metric");
        for reason in Overload::LABELS {
            metrics.overloaded.with_label_values(&[reason]);
        }
        for coding in Coding::ALL {
            metrics.compressions.with_label_values(&[coding.name()]);
        }
        for op in Op::LABELS {
            metrics.redis_errors.with_label_values(&[op]);
        }
        for result in RELOAD_RESULTS {
            metrics.config_reloads.with_label_values(&[result]);
        }
        // Every bounded label value exists from the start, so dashboards see zeros.
        for kind in QueryError::KINDS {
            metrics.clickhouse_errors.with_label_values(&[kind]);
        }
        for log_type in LogType::ALL {
            for outcome in std::iter::once("ok").chain(QueryError::KINDS) {
                metrics
                    .query_duration
                    .with_label_values(&[log_type.as_str(), outcome]);
            }
        }
        metrics
    }

    /// Counts one answer of `log_type` in `logproxy_cache_requests_total`.
    pub fn count_cache(&self, log_type: LogType, result: CacheResult) {
        // `LogType::ALL` and `CacheResult::LABELS` are in declaration order.
        self.cache_counts[log_type as usize][result as usize].inc();
    }

    /// Counts one HTTP answer in `logproxy_http_requests_total` and its time in
    /// `logproxy_http_request_duration_seconds`.
    pub fn observe_http(&self, route: &str, status: StatusCode, seconds: f64) {
        let status_code = status.as_u16();
        HTTP_HANDLES.with_borrow_mut(|handles| {
            let found = handles.iter().position(|h| {
                h.metrics == self.id && h.status == status_code && *h.route == *route
            });
            let index = found.unwrap_or_else(|| {
                if handles.len() >= HTTP_HANDLES_PER_THREAD {
                    handles.clear();
                }
                handles.push(HttpHandles {
                    metrics: self.id,
                    route: route.into(),
                    status: status_code,
                    requests: self
                        .http_requests
                        .with_label_values(&[route, status.as_str()]),
                    duration: self.http_duration.with_label_values(&[route]),
                });
                handles.len() - 1
            });
            let handles = &handles[index];
            handles.requests.inc();
            handles.duration.observe(seconds);
        });
    }

    pub fn count_overload(&self, reason: Overload) {
        self.overloaded
            .with_label_values(&[Overload::LABELS[reason as usize]])
            .inc();
    }

    /// The handles of replica `index` of shard `shard`, every label value created now.
    pub fn replica(&self, shard: usize, index: usize) -> ReplicaMetrics {
        let (shard, replica) = (shard.to_string(), index.to_string());
        ReplicaMetrics {
            up: self.replica_up.with_label_values(&[&shard, &replica]),
            suspect: self.replica_suspect.with_label_values(&[&shard, &replica]),
            // `as_str` beside a `&str`: a `&String` there type-checks on newer compilers
            // only, and the Dockerfile builds with rust-version 1.89.
            attempts: AttemptKind::LABELS.map(|kind| {
                self.clickhouse_attempts.with_label_values(&[
                    shard.as_str(),
                    replica.as_str(),
                    kind,
                ])
            }),
        }
    }

    /// Creates every series of a configured tenant (zeros until something happens), with its
    /// cache share and slot cap, and returns its slot handles.
    pub fn add_tenant(&self, name: &str, share_bytes: u64, slot_limit: usize) -> TenantSlotMetrics {
        self.tenant_cache_bytes.with_label_values(&[name]);
        self.tenant_cache_evictions.with_label_values(&[name]);
        self.tenant_cache_share
            .with_label_values(&[name])
            .set(share_bytes as i64);
        self.tenant_slots_limit
            .with_label_values(&[name])
            .set(slot_limit as i64);
        TenantSlotMetrics {
            in_use: self.tenant_slots_in_use.with_label_values(&[name]),
            queue_wait: self.tenant_queue_wait.with_label_values(&[name]),
        }
    }

    /// Drops the series of a tenant a reload removed.
    pub fn remove_tenant(&self, name: &str) {
        let _ = self.tenant_cache_bytes.remove_label_values(&[name]);
        let _ = self.tenant_cache_share.remove_label_values(&[name]);
        let _ = self.tenant_cache_evictions.remove_label_values(&[name]);
        let _ = self.tenant_slots_in_use.remove_label_values(&[name]);
        let _ = self.tenant_slots_limit.remove_label_values(&[name]);
        let _ = self.tenant_queue_wait.remove_label_values(&[name]);
    }

    /// The handles of the fleet (Redis).
    pub fn fleet(&self) -> FleetMetrics {
        FleetMetrics {
            errors: Op::LABELS.map(|op| self.redis_errors.with_label_values(&[op])),
            up: self.redis_up.clone(),
        }
    }

    /// The registry, for modules that register metrics of their own.
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

#[cfg(test)]
mod tests {
    use super::*;

    fn series(metrics: &Metrics, name: &str) -> Option<f64> {
        let text = metrics.render();
        let line = text.lines().find(|l| l.starts_with(name))?;
        line[name.len()..].trim().parse().ok()
    }

    #[test]
    fn per_thread_handles_count_into_their_own_registry_exactly() {
        let (a, b) = (Metrics::new(), Metrics::new());
        let route = "/v1/apps/{app_id}/logs";
        for _ in 0..3 {
            a.observe_http(route, StatusCode::OK, 0.001);
        }
        a.observe_http(route, StatusCode::NOT_FOUND, 0.001);
        b.observe_http(route, StatusCode::OK, 0.001);
        a.clone()
            .observe_http("unmatched", StatusCode::NOT_FOUND, 0.001);
        let ok = r#"logproxy_http_requests_total{route="/v1/apps/{app_id}/logs",status="200"}"#;
        assert_eq!(series(&a, ok), Some(3.0));
        assert_eq!(series(&b, ok), Some(1.0));
        let count =
            r#"logproxy_http_request_duration_seconds_count{route="/v1/apps/{app_id}/logs"}"#;
        assert_eq!(series(&a, count), Some(4.0));
        let unmatched = r#"logproxy_http_requests_total{route="unmatched",status="404"}"#;
        assert_eq!(series(&a, unmatched), Some(1.0));

        a.count_cache(LogType::Runtime, CacheResult::Hit);
        a.count_cache(LogType::Requests, CacheResult::Coalesced);
        let hit = r#"logproxy_cache_requests_total{log_type="runtime",result="hit"}"#;
        let coalesced = r#"logproxy_cache_requests_total{log_type="requests",result="coalesced"}"#;
        assert_eq!(
            (series(&a, hit), series(&a, coalesced)),
            (Some(1.0), Some(1.0))
        );
        assert_eq!(series(&b, hit), Some(0.0), "zero from the start");
    }
}
