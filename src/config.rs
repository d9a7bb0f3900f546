//! Typed settings: a TOML file, then `LOGPROXY__SECTION__KEY` environment overrides.

use std::path::Path;

use serde::Deserialize;

/// The default configuration file, relative to the working directory.
pub const DEFAULT_CONFIG: &str = "config/default.toml";

#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    #[serde(default)]
    pub server: ServerSettings,
    #[serde(default)]
    pub clickhouse: ClickHouseSettings,
    #[serde(default)]
    pub cache: CacheSettings,
    #[serde(default)]
    pub rate_limit: RateLimitSettings,
    #[serde(default)]
    pub auth: AuthSettings,
    #[serde(default)]
    pub logs: LogsSettings,
    #[serde(default)]
    pub actors: ActorSettings,
    #[serde(default)]
    pub logging: LoggingSettings,
    #[serde(default)]
    pub cors: CorsSettings,
    #[serde(default)]
    pub compression: CompressionSettings,
    #[serde(default)]
    pub redis: RedisSettings,
}

/// CONTRACT.md §7: a fleet of proxies sharing rate limits, pages and single-flight in Redis.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RedisSettings {
    /// Empty: per-process state; `redis://host:6379/0`: shared with the fleet.
    pub url: String,
    /// Put before every key, so several fleets (or other users) can share one Redis.
    pub key_prefix: String,
    /// A slower Redis call counts as failed; the request goes on without it.
    pub timeout_ms: u64,
    /// While Redis fails, each process admits 1/N of each app's quota.
    pub fallback_fleet_size: u32,
    /// Pages with a longer body are not shared (each process caches them itself).
    pub max_page_bytes: usize,
}

impl Default for RedisSettings {
    fn default() -> Self {
        Self {
            url: String::new(),
            key_prefix: "logproxy:".into(),
            timeout_ms: 50,
            fallback_fleet_size: 1,
            max_page_bytes: 1024 * 1024,
        }
    }
}

impl RedisSettings {
    pub fn enabled(&self) -> bool {
        !self.url.is_empty()
    }
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CompressionSettings {
    /// Bodies shorter than this are sent as they are, whatever the client accepts.
    pub min_bytes: usize,
}

impl Default for CompressionSettings {
    fn default() -> Self {
        Self { min_bytes: 1024 }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CorsSettings {
    /// Origins whose browsers may read the answers (`"*"`: any); empty: CORS off.
    #[serde(deserialize_with = "list_or_comma_separated")]
    pub allowed_origins: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerSettings {
    /// Address to listen on; port 0 picks a free port.
    pub bind: String,
    /// HTTP worker threads; 0 means one per core.
    pub workers: usize,
    /// An idle keep-alive connection is closed after this long (longer than a load
    /// balancer's idle timeout, so the balancer closes first).
    pub keep_alive_seconds: u64,
    /// A connection must send a whole request head within this long.
    pub client_request_timeout_ms: u64,
    /// On SIGTERM/SIGINT, in-flight requests get this long to finish.
    pub shutdown_timeout_seconds: u64,
    /// Open connections per worker; more wait in the listen backlog.
    pub max_connections: usize,
    /// A connection whose sent data stays unacknowledged this long (a client that stops
    /// reading, or is gone) is dropped by the kernel (TCP_USER_TIMEOUT); 0: the OS default.
    pub send_timeout_seconds: u64,
}

impl Default for ServerSettings {
    fn default() -> Self {
        Self {
            bind: "127.0.0.1:8080".into(),
            workers: 0,
            keep_alive_seconds: 75,
            client_request_timeout_ms: 5000,
            shutdown_timeout_seconds: 30,
            max_connections: 25_000,
            send_timeout_seconds: 20,
        }
    }
}

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LoggingSettings {
    pub format: LogFormat,
    /// A `tracing` filter (`info`, `warn,logproxy=debug`, ...); `RUST_LOG` wins when set.
    pub level: String,
    /// One line per request: method, path, status, duration, cache result, tenant.
    pub access: bool,
}

impl Default for LoggingSettings {
    fn default() -> Self {
        Self {
            format: LogFormat::Text,
            level: "info".into(),
            access: false,
        }
    }
}

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
    /// The replicas' URLs: `urls`, or `url` alone, or the default.
    pub fn replica_urls(&self) -> Vec<String> {
        match (self.url.is_empty(), self.urls.is_empty()) {
            (_, false) => self.urls.clone(),
            (false, true) => vec![self.url.clone()],
            (true, true) => vec![DEFAULT_CLICKHOUSE_URL.into()],
        }
    }
}

/// A list from a TOML array, or from one comma-separated string (an environment variable).
fn list_or_comma_separated<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<Vec<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Either {
        List(Vec<String>),
        Text(String),
    }
    Ok(match Either::deserialize(d)? {
        Either::List(list) => list,
        Either::Text(text) => text
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(String::from)
            .collect(),
    })
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CacheSettings {
    /// Seconds an entry is fresh; 0 turns the cache off (every request queries).
    pub ttl_seconds: u64,
    pub max_bytes: u64,
    pub stale_if_error_seconds: u64,
}

impl Default for CacheSettings {
    fn default() -> Self {
        Self {
            ttl_seconds: 10,
            max_bytes: 256 * 1024 * 1024,
            stale_if_error_seconds: 300,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RateLimitSettings {
    pub requests_per_second: u32,
    pub burst: u32,
    pub overrides: Vec<RateLimitOverride>,
}

impl Default for RateLimitSettings {
    fn default() -> Self {
        Self {
            requests_per_second: 20,
            burst: 40,
            overrides: Vec::new(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RateLimitOverride {
    pub app_id: String,
    pub requests_per_second: u32,
    pub burst: u32,
}

impl RateLimitSettings {
    /// `(requests_per_second, burst)` for one app, overrides first.
    pub fn for_app(&self, app_id: &str) -> (u32, u32) {
        self.overrides
            .iter()
            .find(|o| o.app_id == app_id)
            .map(|o| (o.requests_per_second, o.burst))
            .unwrap_or((self.requests_per_second, self.burst))
    }
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuthSettings {
    pub enabled: bool,
    pub tenants: Vec<TenantSettings>,
}

impl Default for AuthSettings {
    fn default() -> Self {
        Self {
            enabled: true,
            tenants: Vec::new(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TenantSettings {
    pub name: String,
    pub api_key_sha256: Vec<String>,
    pub apps: Vec<String>,
    #[serde(default)]
    pub scopes: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogsSettings {
    /// The accepted values of `level` (lower case); `warning` is always read as `warn`.
    pub levels: Vec<String>,
}

impl Default for LogsSettings {
    fn default() -> Self {
        Self {
            levels: ["log", "debug", "info", "warn", "error"]
                .map(String::from)
                .to_vec(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ActorSettings {
    /// Dedicated arbiter threads for the per-app actors; 0 (the default) puts the actors
    /// on the HTTP worker threads, which saves a thread hop on many requests.
    pub arbiters: usize,
    /// Messages an app's mailbox holds before requests get 503 `overloaded`.
    pub mailbox_capacity: usize,
    /// An app's actor stops after this many idle seconds.
    pub idle_timeout_seconds: u64,
}

impl Default for ActorSettings {
    fn default() -> Self {
        Self {
            arbiters: 0,
            mailbox_capacity: 1024,
            idle_timeout_seconds: 300,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("configuration file {path} not found")]
    Missing { path: String },
    /// The cause is part of the message (not also a `source()`, which `{:#}` would repeat).
    #[error("configuration {path}: {error}")]
    Invalid {
        path: String,
        error: config::ConfigError,
    },
    #[error("configuration {path}: {message}")]
    Rejected { path: String, message: String },
}

impl Settings {
    /// Reads `path` (which must exist), then the `LOGPROXY__SECTION__KEY` variables.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let shown = path.display().to_string();
        if !path.is_file() {
            return Err(ConfigError::Missing { path: shown });
        }
        let invalid = |error| ConfigError::Invalid {
            path: shown.clone(),
            error,
        };
        let mut settings: Settings = config::Config::builder()
            .add_source(config::File::from(path).format(config::FileFormat::Toml))
            .add_source(
                config::Environment::with_prefix("LOGPROXY")
                    .prefix_separator("__")
                    // No `try_parsing`: it would turn "0123" into "123" and "nan" into "NaN"
                    // in string keys; typed keys parse the text anyway.
                    .separator("__"),
            )
            .build()
            .map_err(invalid)?
            .try_deserialize()
            .map_err(invalid)?;
        // The environment overrides the file: one of the two replica keys set there
        // replaces whichever of them the file set.
        let env = |key| std::env::var_os(key).is_some();
        match (
            env("LOGPROXY__CLICKHOUSE__URL"),
            env("LOGPROXY__CLICKHOUSE__URLS"),
        ) {
            (true, false) => settings.clickhouse.urls.clear(),
            (false, true) => settings.clickhouse.url.clear(),
            _ => {}
        }
        settings.check().map_err(|message| ConfigError::Rejected {
            path: shown.clone(),
            message,
        })?;
        Ok(settings)
    }

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
        for url in ch.replica_urls() {
            if !url.starts_with("http://") {
                return Err(format!(
                    "clickhouse replica {url:?}: only http:// URLs are supported (this build has no TLS)"
                ));
            }
        }
        for (key, name) in [
            ("clickhouse.runtime_table", &ch.runtime_table),
            ("clickhouse.requests_table", &ch.requests_table),
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
                "clickhouse.max_concurrent_queries",
                ch.max_concurrent_queries,
            ),
            (
                "clickhouse.max_concurrent_queries_per_app",
                ch.max_concurrent_queries_per_app,
            ),
            ("actors.mailbox_capacity", self.actors.mailbox_capacity),
            ("server.max_connections", self.server.max_connections),
            ("redis.timeout_ms", self.redis.timeout_ms as usize),
            (
                "redis.fallback_fleet_size",
                self.redis.fallback_fleet_size as usize,
            ),
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
        if self.logs.levels.is_empty() {
            return Err("logs.levels must name at least one level".into());
        }
        Ok(())
    }
}

/// A ClickHouse identifier safe to use unquoted and quoted alike.
pub fn is_identifier(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
        && name.len() <= 128
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identifiers_accept_plain_names_and_reject_anything_else() {
        assert!(is_identifier("canvas_app_logs"));
        assert!(is_identifier("_t1"));
        for bad in ["", "1abc", "a-b", "a;DROP TABLE x", "a b", "`a`", "a.b"] {
            assert!(!is_identifier(bad), "{bad:?}");
        }
    }

    #[test]
    fn rate_limit_overrides_win_over_the_default() {
        let mut rl = RateLimitSettings::default();
        rl.overrides.push(RateLimitOverride {
            app_id: "a".into(),
            requests_per_second: 1,
            burst: 2,
        });
        assert_eq!(rl.for_app("a"), (1, 2));
        assert_eq!(rl.for_app("b"), (20, 40));
    }
}
