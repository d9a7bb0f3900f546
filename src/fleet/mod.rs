//! `Fleet`: what several proxies share through Redis (CONTRACT.md §7): each app's rate
//! limit, decided on Redis's clock; fetched pages; and one query per key across the fleet.
//!
//! Redis helps but is never required: every call is bounded by `redis.timeout_ms`, and a
//! failed or slow call makes the caller go on alone (the process's share of the quota, its
//! own cache, its own query). After a failure Redis is left alone for a moment, then tried
//! again, so an outage costs one timeout per `RETRY_AFTER`, not one per request.

mod flight;
mod limit;

use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use prometheus::{IntCounter, IntGauge, Registry};
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::RedisResult;

use crate::config::RedisSettings;
use crate::domain::QueryKey;
use crate::metrics::{counter_vec, gauge};
use crate::telemetry::Throttle;

pub use limit::{FleetQuota, Grant};

/// How long Redis is left alone after a failed call.
const RETRY_AFTER: Duration = Duration::from_secs(1);

/// What a Redis call was for: the `op` label of `logproxy_redis_errors_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    RateLimit,
    PageGet,
    PagePut,
    Lock,
}

impl Op {
    pub const LABELS: [&'static str; 4] = ["rate_limit", "page_get", "page_put", "lock"];

    fn label(self) -> &'static str {
        Self::LABELS[self as usize]
    }
}

/// The fleet's metrics, registered with or without `redis.url` (0 and zeros without).
#[derive(Clone)]
pub struct FleetMetrics {
    /// By `Op`, in `Op::LABELS` order.
    pub errors: [IntCounter; Op::LABELS.len()],
    /// 1 while Redis answers, 0 while the process goes on alone.
    pub up: IntGauge,
}

impl FleetMetrics {
    pub fn register(registry: &Registry) -> Self {
        let errors = counter_vec(
            registry,
            "logproxy_redis_errors_total",
            "Redis calls that failed or outlasted redis.timeout_ms, by op: rate_limit, page_get, page_put, lock.",
            &["op"],
        );
        Self {
            errors: Op::LABELS.map(|op| errors.with_label_values(&[op])),
            up: gauge(
                registry,
                "logproxy_redis_up",
                "With redis.url: 1 while Redis answers, 0 while the process goes on alone.",
            ),
        }
    }
}

pub struct Fleet {
    conn: ConnectionManager,
    /// Redis calls run here, so the connection's own task never waits for a busy HTTP
    /// worker; dropped (in the background) with the fleet.
    runtime: Option<tokio::runtime::Runtime>,
    handle: tokio::runtime::Handle,
    prefix: String,
    timeout: Duration,
    max_page_bytes: usize,
    metrics: FleetMetrics,
    epoch: Instant,
    /// Milliseconds since `epoch` before which Redis is not called (after a failure).
    down_until_ms: AtomicU64,
    warn: Throttle,
}

impl Fleet {
    /// Prepares the connection without making it: Redis need not be up when the process
    /// starts. Fails only on a malformed `redis.url`.
    pub fn new(settings: &RedisSettings, metrics: FleetMetrics) -> anyhow::Result<Self> {
        let client = redis::Client::open(settings.url.as_str())
            .map_err(|e| anyhow::anyhow!("redis.url = {:?}: {e}", settings.url))?;
        let timeout = Duration::from_millis(settings.timeout_ms);
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("redis")
            .enable_all()
            .build()?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(timeout))
            .set_response_timeout(Some(timeout))
            .set_number_of_retries(1)
            .set_min_delay(Duration::from_millis(10))
            .set_max_delay(Duration::from_millis(100));
        let conn = {
            let _inside = runtime.enter();
            ConnectionManager::new_lazy_with_config(client, config)?
        };
        metrics.up.set(1);
        Ok(Self {
            conn,
            handle: runtime.handle().clone(),
            runtime: Some(runtime),
            prefix: settings.key_prefix.clone(),
            timeout,
            max_page_bytes: settings.max_page_bytes,
            metrics,
            epoch: Instant::now(),
            down_until_ms: AtomicU64::new(0),
            warn: Throttle::new(1),
        })
    }

    fn now_ms(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64
    }

    /// Whether Redis is being used now (it answered last, or its pause is over).
    pub fn is_up(&self) -> bool {
        self.now_ms() >= self.down_until_ms.load(Ordering::Relaxed)
    }

    /// Runs one Redis exchange within `timeout_ms`; `None` when Redis is paused, failed or
    /// was too slow (counted, and Redis paused for `RETRY_AFTER`).
    async fn call<T, F, Fut>(&self, op: Op, exchange: F) -> Option<T>
    where
        F: FnOnce(ConnectionManager) -> Fut,
        Fut: Future<Output = RedisResult<T>> + Send + 'static,
        T: Send + 'static,
    {
        if !self.is_up() {
            return None;
        }
        let task = self.handle.spawn(tokio::time::timeout(
            self.timeout,
            exchange(self.conn.clone()),
        ));
        let error = match task.await {
            Ok(Ok(Ok(value))) => {
                self.metrics.up.set(1);
                return Some(value);
            }
            Ok(Ok(Err(e))) => e.to_string(),
            Ok(Err(_elapsed)) => format!("no answer within {:?}", self.timeout),
            Err(e) => e.to_string(),
        };
        self.metrics.errors[op as usize].inc();
        self.metrics.up.set(0);
        self.down_until_ms.store(
            self.now_ms() + RETRY_AFTER.as_millis() as u64,
            Ordering::Relaxed,
        );
        if let Some(suppressed) = self.warn.admit() {
            tracing::warn!(
                op = op.label(),
                %error,
                suppressed,
                "redis call failed; going on without the fleet for a moment"
            );
        }
        None
    }

    /// `<prefix><kind>:<log_type>:<hours>:<level>:[<limit>:]<app_id>`, the hours part
    /// `<start>~<end>` for an absolute window and `@<ts>.<tie>.<dup>` added for a cursor's
    /// position: readable, and unique per key since app ids and levels hold no `:`.
    fn key(&self, kind: &str, key: &QueryKey, limit: Option<u32>) -> String {
        let level = key.level.as_deref().unwrap_or("-");
        let limit = limit.map(|l| format!("{l}:")).unwrap_or_default();
        let span = match (key.range, key.after) {
            (None, _) => key.hours.to_string(),
            (Some(w), after) => {
                let end = w.end_ms.map_or_else(|| "-".to_owned(), |e| e.to_string());
                let after =
                    after.map_or_else(String::new, |p| format!("@{}.{:x}.{}", p.ts, p.tie, p.dup));
                format!("{}~{end}{after}", w.start_ms)
            }
        };
        format!(
            "{}{kind}:{}:{span}:{level}:{limit}{}",
            self.prefix,
            key.log_type.as_str(),
            key.app_id
        )
    }
}

impl Drop for Fleet {
    fn drop(&mut self) {
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}
