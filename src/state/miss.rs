//! The miss path: the fleet's page or a query of this process, in a fair query slot; a
//! page past its TTL refreshed by its newest rows only where the merge is provably what a
//! full query would return (CONTRACT.md §11).

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::Core;
use crate::cache::{FetchError, Fetched, Origin, Owner, Refresh};
use crate::clickhouse::rows::LogSink;
use crate::clickhouse::{Bounds, ChClient, QueryError};
use crate::config::CacheSettings;
use crate::domain::LogQuery;
use crate::page::{Listing, Page, PageBuilder};
use crate::slots::Claimant;

/// A refresh by the newest rows: query the rows at or after `since_ms` (at most `limit`),
/// then go on with `old`'s entries before `cut_ms`.
struct Delta<'a> {
    old: &'a Page,
    cut_ms: i64,
    since_ms: i64,
    limit: u32,
}

impl<'a> Delta<'a> {
    /// The refresh of `old` for a request of `limit` whose window starts at `window_ms`, if
    /// `delta` allows one: a page whose last full query is younger than
    /// `delta_max_age_seconds`, that covers the request and has a newest entry.
    fn plan(old: &'a Page, limit: u32, window_ms: i64, delta: &CacheSettings) -> Option<Self> {
        let max_age = Duration::from_secs(delta.delta_max_age_seconds);
        let young = old.full_at()?.elapsed() < max_age;
        if !delta.delta_refresh || !young || !old.covers(limit) || old.is_settled() {
            return None;
        }
        let overlap = i64::try_from(delta.delta_overlap_ms).unwrap_or(i64::MAX);
        let cut_ms = old.newest_ms()?.saturating_sub(overlap);
        Some(Self {
            old,
            cut_ms,
            since_ms: cut_ms.max(window_ms),
            // A full page keeps its length; a short one held the whole window, so it
            // stays complete at the longer of the two limits.
            limit: match old.is_full() {
                true => old.fetched_limit(),
                false => old.fetched_limit().max(limit),
            },
        })
    }

    /// The merged page, when it is provably what a full query returns now: the newest rows
    /// (`fresh`, every row at or after `since_ms`, up to the limit) then the old page's
    /// entries before the cut that are still in the window. The old page's entries before
    /// the cut are the first rows there (it took the first rows of the whole window), as long
    /// as no row at or after the cut went missing: the query found at least as many as the
    /// old page held there.
    ///
    /// When the merge holds just what the old page held, it keeps the old page's window,
    /// and so its `next_cursor`, body and ETag (a client's `If-None-Match` still matches).
    fn merge(&self, mut fresh: PageBuilder, window_ms: i64) -> Option<Page> {
        let held = self.old.count_since(self.since_ms);
        if fresh.len() < held {
            return None;
        }
        fresh.extend_older(self.old, self.cut_ms, window_ms);
        if fresh.same_entries_as(self.old) {
            fresh.keep_listing(*self.old.listing());
        }
        Some(fresh.finish_merged(Instant::now(), self.old.full_at()))
    }
}

impl Core {
    /// The miss path (hits never come here): with Redis, the fleet's page or its one query
    /// for the key; else (or when Redis fails) this process's own query. `previous` is the
    /// page the cache holds for the key, if any (past its TTL, or too short).
    pub async fn fetch_page(
        &self,
        owner: &Owner,
        q: &LogQuery,
        request_id: &str,
        previous: Option<Arc<Page>>,
    ) -> Result<Fetched, FetchError> {
        let query = || self.query(owner, q, request_id, previous.as_deref());
        match &self.fleet {
            Some(fleet) => {
                let ch = &self.settings.clickhouse;
                // Past this, a proxy that holds the key's lock is taken to be stuck.
                let max_wait = Duration::from_millis(
                    ch.queue_timeout_ms
                        .saturating_add(ch.query_timeout_ms.saturating_mul(2)),
                );
                fleet
                    .fetch(&self.cache, &q.key, q.limit, owner, max_wait, query)
                    .await
            }
            None => Ok(Fetched {
                page: query().await?,
                origin: Origin::Query,
            }),
        }
    }

    /// A query of this process: a query slot, in fair turn with the other tenants and
    /// apps (within `queue_timeout_ms`, else 503 overloaded), then the newest rows merged
    /// into `previous`, or the whole window.
    async fn query(
        &self,
        owner: &Owner,
        q: &LogQuery,
        request_id: &str,
        previous: Option<&Page>,
    ) -> Result<Page, FetchError> {
        // A shard with no healthy replica fails its apps at once and holds no query slot.
        if !self.shards.for_app(&q.key.app_id).available() {
            return Err(
                QueryError::Unavailable("no healthy replica of the app's shard".into()).into(),
            );
        }
        let claimant = Claimant {
            tenant: owner.clone(),
            app: q.key.app_id.clone(),
        };
        let queued = Instant::now();
        let deadline = tokio::time::Instant::now() + self.queue_timeout;
        let waited = self.slots.acquire(&claimant, deadline).await;
        self.slot_metrics
            .queue_wait
            .observe(queued.elapsed().as_secs_f64());
        let _slot = waited.map_err(|_| FetchError::Overloaded)?;

        let now_ms = chrono::Utc::now().timestamp_millis();
        let window = q.key.window(now_ms);
        let live = self.live.load();
        let settled_ms = live.cache.settled_after_seconds.saturating_mul(1000) as i64;
        let listing = Listing {
            binding: q.key.binding(),
            window,
            after: q.key.after,
        };
        // Only a first page whose window reaches now gains newest rows (§11).
        let delta = previous
            .filter(|_| q.key.moves())
            .and_then(|old| Delta::plan(old, q.limit, window.start_ms, &live.cache));
        if let Some(delta) = delta {
            let bounds = Bounds {
                start_ms: delta.since_ms,
                end_ms: None,
                after: None,
            };
            let fresh = self
                .run(&claimant, q, bounds, delta.limit, listing, request_id)
                .await?;
            if let Some(page) = delta.merge(fresh, window.start_ms) {
                self.cache_metrics.count_refresh(Refresh::Delta);
                return Ok(page);
            }
        }
        let bounds = Bounds {
            start_ms: window.start_ms,
            end_ms: window.end_ms,
            after: q.key.after,
        };
        let page = self
            .run(&claimant, q, bounds, q.limit, listing, request_id)
            .await?
            .settled(q.key.settled(now_ms, settled_ms))
            .finish(Instant::now());
        if previous.is_some() {
            self.cache_metrics.count_refresh(Refresh::Full);
        }
        Ok(page)
    }

    /// One query on a replica of the app's shard (retried or hedged there at most once):
    /// the first `limit` rows of the app in `bounds`, built into a page of `listing`.
    async fn run(
        &self,
        claimant: &Claimant,
        q: &LogQuery,
        bounds: Bounds,
        limit: u32,
        listing: Listing,
        request_id: &str,
    ) -> Result<PageBuilder, QueryError> {
        // Unique on the server even when a client reuses its request id, on one process or
        // on several of a fleet (ClickHouse refuses a second running query with one id).
        let n = self.queries.fetch_add(1, Ordering::Relaxed);
        let query_id = format!("{request_id}.{:08x}.{n}", self.id_prefix >> 32);
        let page = || {
            let page = PageBuilder::new(&q.key.app_id, q.key.log_type, limit, listing);
            let rows = page.rows_to_ask();
            (page, rows)
        };
        self.query_rows(claimant, q, bounds, &query_id, page).await
    }

    /// One query of `q`'s rows in `bounds`, named `query_id` on the server, on a replica of
    /// the app's shard (retried or hedged there at most once, an extra attempt in a slot of
    /// `claimant`'s if one is free): each attempt decodes into a sink of its own, which
    /// `sink` makes with the number of rows to ask for. Timed, and its failures counted, in
    /// the query metrics. The caller holds the query's slot.
    pub async fn query_rows<S: LogSink>(
        &self,
        claimant: &Claimant,
        q: &LogQuery,
        bounds: Bounds,
        query_id: &str,
        sink: impl Fn() -> (S, u32),
    ) -> Result<S, QueryError> {
        let started = Instant::now();
        // A retry or hedge takes a slot too, if one is free within the same caps.
        let extra_slot = || self.slots.try_acquire(claimant);
        let attempt = |ch: ChClient, query_id: String| {
            let (mut sink, rows) = sink();
            async move {
                ch.logs(q, &bounds, rows, &query_id, &mut sink).await?;
                Ok(sink)
            }
        };
        let replicas = self.shards.for_app(&q.key.app_id);
        let result = replicas.run(query_id, extra_slot, attempt).await;
        let seconds = started.elapsed().as_secs_f64();
        self.clickhouse_metrics
            .observe_query(q.key.log_type, result.as_ref().err(), seconds);
        result
    }
}

#[cfg(test)]
mod tests {
    use rand::{Rng as _, SeedableRng as _};

    use super::*;
    use crate::clickhouse::RuntimeRow;
    use crate::domain::LogType;

    /// What `RUNTIME_LOGS` returns: rows at or after `since_ms`, newest first, ties by their
    /// tie and then the other columns, at most `limit` and one more, into a builder of the
    /// listing of the window that starts at `window_ms`.
    fn query(rows: &[RuntimeRow], since_ms: i64, limit: u32, window_ms: i64) -> PageBuilder {
        let mut found: Vec<&RuntimeRow> =
            rows.iter().filter(|r| r.timestamp_ms >= since_ms).collect();
        found.sort_by_key(|r| {
            let c = (&r.level, &r.message, &r.route_path, &r.request_id);
            let columns = (c.0.clone(), c.1.clone(), c.2.clone(), c.3.clone());
            (std::cmp::Reverse(r.timestamp_ms), r.as_entry().tie, columns)
        });
        let listing = Listing {
            binding: 0,
            window: crate::domain::Window {
                start_ms: window_ms,
                end_ms: None,
            },
            after: None,
        };
        let mut page = PageBuilder::new("app", LogType::Runtime, limit, listing);
        for row in found.into_iter().take(limit as usize + 1) {
            let e = row.as_entry();
            page.entry(row.timestamp_ms, e.tie, &e);
        }
        page
    }

    fn row(rng: &mut impl rand::Rng, ts: i64) -> RuntimeRow {
        RuntimeRow {
            app_id: "app".into(),
            timestamp_ms: ts,
            level: ["info", "warn"][rng.random_range(0..2)].into(),
            message: format!("m{}", rng.random_range(0..3)),
            route_path: "/x".into(),
            request_id: format!("r{}", rng.random_range(0..2)),
        }
    }

    fn settings(overlap_ms: u64) -> CacheSettings {
        CacheSettings {
            delta_overlap_ms: overlap_ms,
            ..CacheSettings::default()
        }
    }

    #[test]
    fn a_merged_refresh_is_byte_identical_to_a_full_query_through_late_rows_ties_and_a_moving_window(
    ) {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(7);
        for limit in [5, 50, 400] {
            let (hour, overlap) = (3_600_000i64, 30_000i64);
            let mut now = 10 * hour;
            let mut rows: Vec<_> = (0..300)
                .map(|_| {
                    let ts = now - rng.random_range(0..hour);
                    row(&mut rng, ts)
                })
                .collect();
            let mut page = query(&rows, now - hour, limit, now - hour).finish(Instant::now());
            let mut merged = 0;
            for _ in 0..60 {
                now += rng.random_range(1_000..120_000);
                // New rows, some up to the overlap late, some on one millisecond, some
                // exact copies of a row already there.
                for _ in 0..rng.random_range(0..20) {
                    let ts = now - rng.random_range(0..overlap - 1_000);
                    rows.push(row(&mut rng, ts));
                }
                let tie = now - 5;
                rows.extend((0..3).map(|_| row(&mut rng, tie)));
                let recent: Vec<_> = rows
                    .iter()
                    .filter(|r| r.timestamp_ms >= now - 20_000)
                    .cloned()
                    .collect();
                if !recent.is_empty() && rng.random_bool(0.5) {
                    rows.push(recent[rng.random_range(0..recent.len())].clone());
                }
                let window = now - hour;
                let full = query(&rows, window, limit, window).finish(Instant::now());
                let delta =
                    Delta::plan(&page, limit, window, &settings(overlap as u64)).expect("a delta");
                let fresh = query(&rows, delta.since_ms, delta.limit, window);
                if let Some(next) = delta.merge(fresh, window) {
                    assert_eq!(
                        next.view(limit).body,
                        full.view(limit).body,
                        "limit {limit}"
                    );
                    merged += 1;
                    page = next;
                } else {
                    page = full;
                }
            }
            assert!(merged >= 55, "limit {limit}: {merged} of 60 merged");
        }
    }

    #[test]
    fn no_delta_for_an_old_page_a_page_that_cannot_cover_the_limit_or_with_delta_off() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(1);
        let rows: Vec<_> = (0..11).map(|i| row(&mut rng, 1_000_000 - i)).collect();
        let full = query(&rows, 0, 10, 0).finish(Instant::now());
        assert!(Delta::plan(&full, 10, 0, &settings(1000)).is_some());
        assert!(
            Delta::plan(&full, 11, 0, &settings(1000)).is_none(),
            "11 > the 10 it holds"
        );
        let off = CacheSettings {
            delta_refresh: false,
            ..settings(1000)
        };
        assert!(Delta::plan(&full, 10, 0, &off).is_none());
        let old = query(&rows, 0, 10, 0).finish(Instant::now() - Duration::from_secs(301));
        assert!(
            Delta::plan(&old, 10, 0, &settings(1000)).is_none(),
            "past delta_max_age_seconds"
        );
        let empty = query(&[], 0, 10, 0).finish(Instant::now());
        assert!(Delta::plan(&empty, 10, 0, &settings(1000)).is_none());
    }

    #[test]
    fn a_refresh_that_finds_fewer_rows_than_the_page_held_after_the_cut_is_not_merged() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(2);
        let rows: Vec<_> = (0..10)
            .map(|i| row(&mut rng, 1_000_000 - i * 100))
            .collect();
        let page = query(&rows, 0, 10, 0).finish(Instant::now());
        let delta = Delta::plan(&page, 10, 0, &settings(500)).unwrap();
        // Rows at or after the cut went missing (deleted): the merge cannot be proven.
        let fresh = query(&rows[1..], delta.since_ms, delta.limit, 0);
        assert!(delta.merge(fresh, 0).is_none());
    }
}
