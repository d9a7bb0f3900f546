//! `[cache]`: the page cache's freshness, stale window, byte budget, tenants' shares, and
//! the refresh of a moving window by its newest rows.

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
    /// A page past its TTL is refreshed by its newest rows only, merged into it
    /// (CONTRACT.md §11), while its last full query is younger than `delta_max_age_seconds`.
    pub delta_refresh: bool,
    /// The refresh asks again for rows this far behind the page's newest entry, so rows
    /// that reach ClickHouse up to this late are still seen.
    pub delta_overlap_ms: u64,
    /// A page whose last full query is older is fetched in full again: rows later than the
    /// overlap appear by then.
    pub delta_max_age_seconds: u64,
    /// A window that ends this long before now is settled (CONTRACT.md §14): its rows no
    /// longer arrive.
    pub settled_after_seconds: u64,
    /// How long a settled page stays fresh (sent as `immutable`).
    pub settled_ttl_seconds: u64,
}

impl Default for CacheSettings {
    fn default() -> Self {
        Self {
            ttl_seconds: 10,
            max_bytes: 256 * 1024 * 1024,
            stale_if_error_seconds: 300,
            tenant_share: 0.5,
            delta_refresh: true,
            delta_overlap_ms: 30_000,
            delta_max_age_seconds: 300,
            settled_after_seconds: 300,
            settled_ttl_seconds: 3600,
        }
    }
}
