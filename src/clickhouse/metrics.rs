//! ClickHouse's metrics: the log queries by log type and outcome, the failures by kind, and
//! each replica's state and the queries sent to it.

use prometheus::{HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Registry};

use super::QueryError;
use crate::domain::LogType;
use crate::metrics::{counter_vec, gauge_vec, histogram_vec};

/// Why a query was sent to a replica: label values of `logproxy_clickhouse_attempts_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttemptKind {
    First,
    Retry,
    Hedge,
}

impl AttemptKind {
    pub const LABELS: [&'static str; 3] = ["first", "retry", "hedge"];

    pub(super) fn label(self) -> &'static str {
        Self::LABELS[self as usize]
    }
}

/// The metric handles of one replica.
pub struct ReplicaMetrics {
    pub up: IntGauge,
    pub suspect: IntGauge,
    /// By `AttemptKind`.
    pub attempts: [IntCounter; 3],
}

pub struct ClickHouseMetrics {
    query_duration: HistogramVec,
    errors: IntCounterVec,
    replica_up: IntGaugeVec,
    replica_suspect: IntGaugeVec,
    attempts: IntCounterVec,
}

impl ClickHouseMetrics {
    /// The families, every bounded label value created now (dashboards see zeros); a
    /// replica's when `replica` gives its handles.
    pub fn register(registry: &Registry) -> Self {
        let metrics = Self {
            query_duration: histogram_vec(
                registry,
                "logproxy_clickhouse_query_duration_seconds",
                "ClickHouse log queries by log type and outcome (ok or an error kind).",
                &["log_type", "outcome"],
            ),
            errors: counter_vec(
                registry,
                "logproxy_clickhouse_errors_total",
                "Failed ClickHouse queries by kind: unavailable, timeout, exception, protocol.",
                &["kind"],
            ),
            replica_up: gauge_vec(
                registry,
                "logproxy_clickhouse_replica_up",
                "1 while the replica is healthy or suspect (0 while down or not probed yet), by shard (index in clickhouse.shards, 0 without) and replica (index in its urls).",
                &["shard", "replica"],
            ),
            replica_suspect: gauge_vec(
                registry,
                "logproxy_clickhouse_replica_suspect",
                "1 while the replica is suspect: its last probes timed out, fewer than probe_failures_to_down in a row (it still counts as up), by shard and replica.",
                &["shard", "replica"],
            ),
            attempts: counter_vec(
                registry,
                "logproxy_clickhouse_attempts_total",
                "Queries sent to a replica, by kind: first, retry (after a failure), hedge.",
                &["shard", "replica", "kind"],
            ),
        };
        for kind in QueryError::KINDS {
            metrics.errors.with_label_values(&[kind]);
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

    /// Counts a log query of `log_type` that took `seconds` and failed with `error`, if it
    /// did.
    pub fn observe_query(&self, log_type: LogType, error: Option<&QueryError>, seconds: f64) {
        let outcome = match error {
            None => "ok",
            Some(e) => {
                self.errors.with_label_values(&[e.kind()]).inc();
                e.kind()
            }
        };
        self.query_duration
            .with_label_values(&[log_type.as_str(), outcome])
            .observe(seconds);
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
                self.attempts
                    .with_label_values(&[shard.as_str(), replica.as_str(), kind])
            }),
        }
    }
}
