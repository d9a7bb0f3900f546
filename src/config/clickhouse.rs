//! `[clickhouse]`: the servers (replicas, or shards of a cluster), the query budget and the
//! tables.

use serde::Deserialize;

use super::list::list_or_comma_separated;

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
    /// Probe timeouts in a row that make a slow (suspect) replica down.
    pub probe_failures_to_down: u32,
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
    /// With `shards`: the cluster's name in ClickHouse's `remote_servers` (CONTRACT.md §13).
    pub cluster: String,
    /// The cluster's shards, in its order; from the environment as text (`shards_from_text`).
    #[serde(deserialize_with = "shards_or_text")]
    pub shards: Vec<ShardSettings>,
}

/// One shard of a cluster: its replicas (as `urls` of §6) and its weight.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ShardSettings {
    #[serde(deserialize_with = "list_or_comma_separated")]
    pub urls: Vec<String>,
    /// As the shard's `<weight>` in `remote_servers`.
    #[serde(default = "one")]
    pub weight: u32,
}

fn one() -> u32 {
    1
}

/// Shards from a TOML array of tables, or from the environment's text: shards separated by
/// `;`, each its replicas' URLs separated by `,`, with an optional `weight*` before them
/// (`2*http://a1:8123,http://a2:8123;http://b1:8123`).
fn shards_or_text<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<ShardSettings>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Either {
        List(Vec<ShardSettings>),
        Text(String),
    }
    match Either::deserialize(d)? {
        Either::List(list) => Ok(list),
        Either::Text(text) => shards_from_text(&text).map_err(serde::de::Error::custom),
    }
}

/// The text form of `shards` (see `shards_or_text`).
pub fn shards_from_text(text: &str) -> Result<Vec<ShardSettings>, String> {
    text.split(';')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|shard| {
            let (weight, urls) = match shard.split_once('*') {
                Some((w, urls)) => (
                    w.trim()
                        .parse()
                        .map_err(|_| format!("shard {shard:?}: {w:?} is not a weight"))?,
                    urls,
                ),
                None => (1, shard),
            };
            let urls = urls
                .split(',')
                .map(str::trim)
                .filter(|u| !u.is_empty())
                .map(String::from)
                .collect();
            Ok(ShardSettings { urls, weight })
        })
        .collect()
}

impl Default for ClickHouseSettings {
    fn default() -> Self {
        Self {
            url: String::new(),
            urls: Vec::new(),
            health_check_interval_ms: 1000,
            hedge_after_ms: 250,
            probe_failures_to_down: 3,
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
            cluster: String::new(),
            shards: Vec::new(),
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

    /// The shards logproxy reads from: `shards`, or one shard of the replicas.
    pub fn shard_list(&self) -> Vec<ShardSettings> {
        match self.shards.is_empty() {
            true => vec![ShardSettings {
                urls: self.replica_urls(),
                weight: 1,
            }],
            false => self.shards.clone(),
        }
    }

    /// Whether the logs are sharded over a cluster (`shards` set).
    pub fn is_cluster(&self) -> bool {
        !self.shards.is_empty()
    }

    /// The table queries read for `table`: on a cluster the shard's local table
    /// (`<table>_local`), else the table itself.
    pub fn read_table(&self, table: &str) -> String {
        match self.is_cluster() {
            true => format!("{table}_local"),
            false => table.to_owned(),
        }
    }

    /// Every server: each shard's replicas, in order.
    pub fn all_urls(&self) -> Vec<String> {
        self.shard_list().into_iter().flat_map(|s| s.urls).collect()
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shards_read_from_text_with_weights_and_replicas() {
        let shards =
            shards_from_text("2*http://a1:8123, http://a2:8123 ; http://b1:8123;").unwrap();
        assert_eq!(
            shards,
            [
                ShardSettings {
                    urls: vec!["http://a1:8123".into(), "http://a2:8123".into()],
                    weight: 2
                },
                ShardSettings {
                    urls: vec!["http://b1:8123".into()],
                    weight: 1
                },
            ]
        );
        assert!(shards_from_text("x*http://a").is_err());
    }
}
