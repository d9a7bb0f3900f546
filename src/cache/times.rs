//! `Times`: how long pages stay fresh and are kept (reloadable), and the moka expiry that
//! applies them.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use moka::Expiry;

use crate::config::CacheSettings;
use crate::domain::QueryKey;
use crate::page::Page;

/// How long pages stay fresh and how long they are kept for stale-if-error, in
/// milliseconds; a reload changes them for the next request.
pub(super) struct Times {
    ttl_ms: AtomicU64,
    /// A settled page's (CONTRACT.md §14).
    settled_ttl_ms: AtomicU64,
    /// How long past its freshness a page is kept for stale-if-error.
    stale_ms: AtomicU64,
}

impl Times {
    pub(super) fn new(settings: &CacheSettings) -> Self {
        let times = Self {
            ttl_ms: AtomicU64::new(0),
            settled_ttl_ms: AtomicU64::new(0),
            stale_ms: AtomicU64::new(0),
        };
        times.set(settings);
        times
    }

    pub(super) fn set(&self, settings: &CacheSettings) {
        let ttl = settings.ttl_seconds.saturating_mul(1000);
        let stale = settings.stale_if_error_seconds.saturating_mul(1000);
        self.ttl_ms.store(ttl, Ordering::Relaxed);
        let settled = settings.settled_ttl_seconds.saturating_mul(1000);
        self.settled_ttl_ms.store(settled, Ordering::Relaxed);
        self.stale_ms.store(stale, Ordering::Relaxed);
    }

    /// How long `page` is fresh: a settled page's TTL, or the cache's.
    pub(super) fn ttl_of(&self, page: &Page) -> Duration {
        match page.is_settled() {
            true => Duration::from_millis(self.settled_ttl_ms.load(Ordering::Relaxed)),
            false => self.ttl(),
        }
    }

    /// How long `page` is kept in all, with the stale window.
    pub(super) fn keep_of(&self, page: &Page) -> Duration {
        let stale = Duration::from_millis(self.stale_ms.load(Ordering::Relaxed));
        self.ttl_of(page).saturating_add(stale)
    }

    pub(super) fn ttl(&self) -> Duration {
        Duration::from_millis(self.ttl_ms.load(Ordering::Relaxed))
    }

    /// How long `page` is still worth keeping (a re-insert to re-weigh it keeps its age).
    pub(super) fn left(&self, page: &Page) -> Duration {
        let left = self.keep_of(page).saturating_sub(page.fetched_at.elapsed());
        left.max(Duration::from_millis(1))
    }
}

/// Pages stay past their freshness for stale-if-error, then moka drops them.
pub(super) struct ExpireWith(pub(super) Arc<Times>);

impl Expiry<QueryKey, Arc<Page>> for ExpireWith {
    fn expire_after_create(&self, _: &QueryKey, page: &Arc<Page>, _: Instant) -> Option<Duration> {
        Some(self.0.left(page))
    }

    /// A refreshed page starts its own time (moka's default would keep the old one's).
    fn expire_after_update(
        &self,
        _: &QueryKey,
        page: &Arc<Page>,
        _: Instant,
        _: Option<Duration>,
    ) -> Option<Duration> {
        Some(self.0.left(page))
    }
}
