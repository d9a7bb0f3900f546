//! `[redis]`: the fleet's shared store (CONTRACT.md §7).

use serde::Deserialize;

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
