//! `[clickhouse]`: the servers, the query budget and the tables.

use serde::Deserialize;

use super::list_or_comma_separated;

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ClickHouseSettings {
    /// One replica: the shorthand of `urls = [url]`. Empty: not set.
    pub url: String,
    /// Replicas holding the same data; from the environment as a comma-separated list.
    #[serde(deserialize_with = "list_or_comma_separated")]
    pub urls: Vec<String>,
    /// Each replica is probed this often (each probe waits at most 1 s).
    pub health_check_interval_ms: u64,
    /// A query with no answer by then is also sent to another healthy replica; 0: off.
    pub hedge_after_ms: u64,
    pub database: String,
    pub user: String,
    pub password: String,
    pub query_timeout_ms: u64,
    pub max_concurrent_queries: usize,
    pub max_concurrent_queries_per_app: usize,
    /// Slots one tenant may hold, even with nobody else waiting; unset: half the process's.
    pub max_concurrent_queries_per_tenant: Option<usize>,
    pub queue_timeout_ms: u64,
    pub runtime_table: String,
    pub requests_table: String,
    /// Row type validation of the `clickhouse` crate (`RowBinaryWithNamesAndTypes`).
    /// ClickHouse 18.16 does not know that format: keep it off there.
    pub validation: bool,
    /// LZ4-compressed responses; off saves CPU on a loopback link.
    pub compression: bool,
}

impl Default for ClickHouseSettings {
    fn default() -> Self {
        Self {
            url: String::new(),
            urls: Vec::new(),
            health_check_interval_ms: 1000,
            hedge_after_ms: 250,
            database: "default".into(),
            user: "default".into(),
            password: String::new(),
            query_timeout_ms: 5000,
            max_concurrent_queries: 32,
            max_concurrent_queries_per_app: 4,
            max_concurrent_queries_per_tenant: None,
            queue_timeout_ms: 1000,
            runtime_table: "canvas_app_logs".into(),
            requests_table: "canvas_request_logs".into(),
            validation: false,
            compression: false,
        }
    }
}

/// The replica used when neither `url` nor `urls` is set.
pub const DEFAULT_CLICKHOUSE_URL: &str = "http://127.0.0.1:18123";

impl ClickHouseSettings {
    /// `max_concurrent_queries_per_tenant`, or half the process's slots (at least one).
    pub fn per_tenant_slots(&self) -> usize {
        self.max_concurrent_queries_per_tenant
            .unwrap_or((self.max_concurrent_queries / 2).max(1))
    }

    /// The replicas' URLs: `urls`, or `url` alone, or the default.
    pub fn replica_urls(&self) -> Vec<String> {
        match (self.url.is_empty(), self.urls.is_empty()) {
            (_, false) => self.urls.clone(),
            (false, true) => vec![self.url.clone()],
            (true, true) => vec![DEFAULT_CLICKHOUSE_URL.into()],
        }
    }
}
