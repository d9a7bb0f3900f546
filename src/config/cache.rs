//! `[cache]`: the page cache's freshness, stale window, byte budget and tenants' shares.

use serde::Deserialize;

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CacheSettings {
    /// Seconds an entry is fresh; 0 turns the cache off (every request queries).
    pub ttl_seconds: u64,
    pub max_bytes: u64,
    pub stale_if_error_seconds: u64,
    /// A tenant's pages may hold more than this part of `max_bytes` only while the cache
    /// has room; past it, its new pages evict its own (CONTRACT.md §10).
    pub tenant_share: f64,
}

impl Default for CacheSettings {
    fn default() -> Self {
        Self {
            ttl_seconds: 10,
            max_bytes: 256 * 1024 * 1024,
            stale_if_error_seconds: 300,
            tenant_share: 0.5,
        }
    }
}
