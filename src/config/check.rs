//! `Settings::check`: the rules serde cannot express (identifiers, non-zero budgets, key
//! format, settings that exclude each other).

use super::{is_identifier, Settings};

impl Settings {
    /// Rules serde cannot express: identifiers, non-zero budgets, key format.
    pub fn check(&self) -> Result<(), String> {
        let ch = &self.clickhouse;
        if !ch.url.is_empty() && !ch.urls.is_empty() {
            return Err(
                "clickhouse.url and clickhouse.urls are both set: set urls (url is the \
                 one-replica shorthand of urls = [url])"
                    .into(),
            );
        }
        if ch.is_cluster() && (!ch.url.is_empty() || !ch.urls.is_empty()) {
            return Err(
                "clickhouse.shards is set together with clickhouse.url or clickhouse.urls: \
                 with a cluster, each shard lists its replicas as its own urls"
                    .into(),
            );
        }
        if ch.is_cluster() && !is_identifier(&ch.cluster) {
            return Err(format!(
                "clickhouse.cluster = {:?}: with clickhouse.shards, name the cluster of \
                 ClickHouse's remote_servers (a plain identifier)",
                ch.cluster
            ));
        }
        for (i, shard) in ch.shards.iter().enumerate() {
            if shard.urls.is_empty() || shard.weight == 0 {
                return Err(format!(
                    "clickhouse.shards[{i}]: a shard needs at least one url and a weight of at least 1"
                ));
            }
        }
        for url in ch.all_urls() {
            if !url.starts_with("http://") {
                return Err(format!(
                    "clickhouse replica {url:?}: only http:// URLs are supported (this build has no TLS)"
                ));
            }
        }
        let (runtime, requests) = (
            ch.read_table(&ch.runtime_table),
            ch.read_table(&ch.requests_table),
        );
        for (key, name) in [
            ("clickhouse.runtime_table", &runtime),
            ("clickhouse.requests_table", &requests),
            ("clickhouse.database", &ch.database),
        ] {
            if !is_identifier(name) {
                return Err(format!(
                    "{key} = {name:?} is not a plain identifier ([A-Za-z_][A-Za-z0-9_]*)"
                ));
            }
        }
        for (key, value) in [
            ("clickhouse.query_timeout_ms", ch.query_timeout_ms as usize),
            (
                "clickhouse.health_check_interval_ms",
                ch.health_check_interval_ms as usize,
            ),
            (
                "clickhouse.probe_failures_to_down",
                ch.probe_failures_to_down as usize,
            ),
            (
                "clickhouse.max_concurrent_queries",
                ch.max_concurrent_queries,
            ),
            (
                "clickhouse.max_concurrent_queries_per_app",
                ch.max_concurrent_queries_per_app,
            ),
            (
                "clickhouse.max_concurrent_queries_per_tenant",
                ch.per_tenant_slots(),
            ),
            ("actors.mailbox_capacity", self.actors.mailbox_capacity),
            ("server.max_connections", self.server.max_connections),
            ("redis.timeout_ms", self.redis.timeout_ms as usize),
            (
                "redis.fallback_fleet_size",
                self.redis.fallback_fleet_size as usize,
            ),
            ("tail.poll_interval_ms", self.tail.poll_interval_ms as usize),
            (
                "tail.heartbeat_seconds",
                self.tail.heartbeat_seconds as usize,
            ),
            ("tail.max_backfill", self.tail.max_backfill as usize),
            (
                "tail.max_stream_seconds",
                self.tail.max_stream_seconds as usize,
            ),
            ("tail.max_lag_events", self.tail.max_lag_events),
        ] {
            if value == 0 {
                return Err(format!("{key} must be greater than 0"));
            }
        }
        let rl = &self.rate_limit;
        let quotas = std::iter::once(("rate_limit", rl.requests_per_second, rl.burst)).chain(
            rl.overrides
                .iter()
                .map(|o| ("rate_limit.overrides", o.requests_per_second, o.burst)),
        );
        for (key, rps, burst) in quotas {
            if rps == 0 || burst == 0 {
                return Err(format!(
                    "{key}: requests_per_second and burst must be greater than 0"
                ));
            }
        }
        for tenant in &self.auth.tenants {
            for hash in &tenant.api_key_sha256 {
                if hash.len() != 64 || hex::decode(hash).is_err() {
                    return Err(format!(
                        "auth.tenants[{}].api_key_sha256: {hash:?} is not 64 hex digits",
                        tenant.name
                    ));
                }
            }
        }
        let redis = &self.redis;
        if redis.enabled()
            && !["redis://", "unix://", "redis+unix://"]
                .iter()
                .any(|scheme| redis.url.starts_with(scheme))
        {
            return Err(format!(
                "redis.url = {:?}: use redis://host:port/db (this build has no TLS)",
                redis.url
            ));
        }
        let share = self.cache.tenant_share;
        if !(share > 0.0 && share <= 1.0) {
            return Err(format!(
                "cache.tenant_share = {share}: it must be more than 0 and at most 1"
            ));
        }
        if self.logs.levels.is_empty() {
            return Err("logs.levels must name at least one level".into());
        }
        Ok(())
    }
}
