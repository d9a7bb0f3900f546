//! `Replicas`: the ClickHouse servers holding the same data. Each is probed on a timer
//! (`probe.rs`); a query goes to a healthy one with the fewest queries in flight (a suspect
//! one only when none is healthy), is retried or hedged on another at most once, and fails at
//! once when every one is down (CONTRACT.md §6).

use std::future::Future;
use std::pin::pin;
use std::sync::atomic::{AtomicU32, AtomicU8, AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use futures_util::stream::{FuturesUnordered, StreamExt as _};
use serde::Serialize;
use tokio::sync::{watch, Notify};
use tokio::time::Instant;

use super::metrics::{AttemptKind, ReplicaMetrics};
use super::{ChClient, QueryError};
use crate::config::ClickHouseSettings;

/// A probe waits this long for its answer.
pub const PROBE_TIMEOUT: Duration = Duration::from_secs(1);

/// A replica's state as `/readyz` shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Health {
    /// Not probed yet: queries may go there, readiness waits for the first probe.
    Unknown,
    Up,
    /// Its last probes timed out, fewer than `probe_failures_to_down` in a row: slow, not
    /// dead. It keeps its queries and gets new ones only when no replica is `Up`.
    Suspect,
    Down,
}

impl Health {
    fn code(self) -> u8 {
        self as u8
    }

    fn from_code(code: u8) -> Self {
        match code {
            0 => Health::Unknown,
            1 => Health::Up,
            2 => Health::Suspect,
            _ => Health::Down,
        }
    }

    /// Whether queries may go there: anything but down.
    pub fn usable(self) -> bool {
        self != Health::Down
    }

    /// Whether it has answered and still counts as up: healthy, or suspect (slow).
    pub fn answering(self) -> bool {
        matches!(self, Health::Up | Health::Suspect)
    }
}

pub(super) struct Replica {
    pub(super) client: ChClient,
    health: AtomicU8,
    /// Probes that failed in a row.
    pub(super) failed_probes: AtomicU32,
    in_flight: AtomicUsize,
    metrics: ReplicaMetrics,
    /// Woken when the replica is marked down: the queries in flight there give up (and
    /// their slots) instead of waiting out `query_timeout_ms`. Never when it is suspect.
    pub(super) went_down: Notify,
    /// Why the last probe found it unusable, when it is something an operator can act on
    /// (tables missing, a cluster layout that disagrees), for `/readyz`.
    pub(super) problem: Mutex<Option<String>>,
}

impl Replica {
    pub(super) fn health(&self) -> Health {
        Health::from_code(self.health.load(Ordering::Acquire))
    }

    /// Sets the state and its gauges; returns the one before. Down wakes the queries in
    /// flight there, so that they give up.
    pub(super) fn set(&self, health: Health) -> Health {
        self.metrics.up.set(i64::from(health.answering()));
        self.metrics
            .suspect
            .set(i64::from(health == Health::Suspect));
        let was = Health::from_code(self.health.swap(health.code(), Ordering::AcqRel));
        if health == Health::Down {
            self.went_down.notify_waiters();
        }
        was
    }

    fn usable(&self) -> bool {
        self.health().usable()
    }
}

/// One replica in `/readyz`.
#[derive(Debug, Clone, Serialize)]
pub struct ReplicaStatus {
    pub shard: usize,
    pub replica: usize,
    pub state: Health,
    pub in_flight: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

pub struct Replicas {
    /// This set's index among the cluster's shards (0 without a cluster).
    pub(super) shard: usize,
    pub(super) replicas: Vec<Replica>,
    next: AtomicUsize,
    hedge_after: Option<Duration>,
    query_timeout: Duration,
    pub(super) probe_interval: Duration,
    /// Failed probes in a row that make a slow replica down.
    pub(super) failures_to_down: u32,
    /// On a cluster: the shards' weights as configured, which every replica's
    /// `system.clusters` must show (CONTRACT.md §13).
    pub(super) expected: Option<Vec<u32>>,
    /// Becomes true once every replica has been probed.
    pub(super) probed: watch::Sender<bool>,
}

impl Replicas {
    /// Shard `shard`'s replicas: one client per URL of `urls`, with `metrics[i]` for
    /// replica `i`; on a cluster, each probe also checks the cluster's layout against
    /// `expected` (the shards' weights).
    pub fn new(
        settings: &ClickHouseSettings,
        shard: usize,
        urls: &[String],
        metrics: Vec<ReplicaMetrics>,
        expected: Option<Vec<u32>>,
    ) -> Self {
        let replicas = urls
            .iter()
            .zip(metrics)
            .map(|(url, metrics)| Replica {
                client: ChClient::with_url(settings, url),
                health: AtomicU8::new(Health::Unknown.code()),
                failed_probes: AtomicU32::new(0),
                in_flight: AtomicUsize::new(0),
                metrics,
                went_down: Notify::new(),
                problem: Mutex::new(None),
            })
            .collect();
        Self {
            shard,
            expected,
            replicas,
            next: AtomicUsize::new(0),
            hedge_after: (settings.hedge_after_ms > 0)
                .then(|| Duration::from_millis(settings.hedge_after_ms)),
            query_timeout: Duration::from_millis(settings.query_timeout_ms),
            probe_interval: Duration::from_millis(settings.health_check_interval_ms),
            failures_to_down: settings.probe_failures_to_down.max(1),
            probed: watch::channel(false).0,
        }
    }

    /// The first replica's client, for tools.
    pub fn first(&self) -> &ChClient {
        &self.replicas[0].client
    }

    /// Each replica's state.
    pub fn status(&self) -> Vec<ReplicaStatus> {
        self.replicas
            .iter()
            .enumerate()
            .map(|(replica, r)| ReplicaStatus {
                shard: self.shard,
                replica,
                state: r.health(),
                in_flight: r.in_flight.load(Ordering::Relaxed),
                reason: r.problem.lock().unwrap_or_else(|e| e.into_inner()).clone(),
            })
            .collect()
    }

    /// Whether a replica is healthy or suspect by its probes; waits (up to one probe
    /// timeout) for the first round of probes after start-up, never queries.
    pub async fn ready(&self) -> bool {
        let mut probed = self.probed.subscribe();
        let _ = tokio::time::timeout(PROBE_TIMEOUT * 2, probed.wait_for(|done| *done)).await;
        self.replicas.iter().any(|r| r.health().answering())
    }

    /// Whether a query could go anywhere now: some replica is not known to be down.
    pub fn available(&self) -> bool {
        self.replicas.iter().any(Replica::usable)
    }

    /// A replica other than `except` for a new query: a healthy one (or one not probed
    /// yet), else a suspect one; fewest queries in flight first, ties to the first one
    /// after a rotating start.
    fn pick(&self, except: Option<usize>) -> Option<usize> {
        let n = self.replicas.len();
        let start = self.next.fetch_add(1, Ordering::Relaxed);
        let candidates = || {
            (0..n)
                .map(move |i| (start + i) % n)
                .filter(move |&i| Some(i) != except)
        };
        let fewest = |state: fn(Health) -> bool| {
            candidates()
                .filter(|&i| state(self.replicas[i].health()))
                .min_by_key(|&i| self.replicas[i].in_flight.load(Ordering::Relaxed))
        };
        fewest(|h| matches!(h, Health::Up | Health::Unknown))
            .or_else(|| fewest(|h| h == Health::Suspect))
    }

    /// Runs `run` on a replica, with at most one extra attempt (a retry after a failure
    /// that means the replica is unavailable or slow, or a hedge after `hedge_after_ms`),
    /// all within `query_timeout_ms`. An extra attempt runs only if `extra_slot` gives it a
    /// slot, held while it runs. The first answer wins; the other attempt is dropped and
    /// killed on its server.
    pub async fn run<T, G, F, Fut>(
        &self,
        query_id: &str,
        mut extra_slot: impl FnMut() -> Option<G>,
        run: F,
    ) -> Result<T, QueryError>
    where
        F: Fn(ChClient, String) -> Fut,
        Fut: Future<Output = Result<T, QueryError>>,
    {
        let deadline = Instant::now() + self.query_timeout;
        let Some(first) = self.pick(None) else {
            return Err(QueryError::Unavailable("no healthy replica".into()));
        };
        let attempt = |replica: usize, kind: AttemptKind, slot: Option<G>| {
            let r = &self.replicas[replica];
            r.metrics.attempts[kind as usize].inc();
            let id = match kind {
                AttemptKind::First => query_id.to_owned(),
                other => format!("{query_id}.{}", other.label()),
            };
            let guard = InFlight::new(&r.in_flight);
            let went_down = r.went_down.notified();
            let work = run(r.client.clone(), id.clone());
            async move {
                let result = tokio::select! {
                    result = work => result,
                    () = went_down => {
                        // A hung server (probes failed `probe_failures_to_down` times, or
                        // its network failed): the query is dropped here and killed there.
                        // A suspect replica's queries run on.
                        self.cancel(&[(replica, id.clone())]);
                        Err(QueryError::Unavailable("the replica was marked down".into()))
                    }
                };
                drop((guard, slot));
                (replica, id, result)
            }
        };
        let mut running = vec![(first, query_id.to_owned())];
        let mut attempts = FuturesUnordered::new();
        attempts.push(attempt(first, AttemptKind::First, None));
        let mut extra_used = false;
        let hedge_at = self.hedge_after.map(|h| Instant::now() + h);
        let mut hedge = pin!(tokio::time::sleep_until(hedge_at.unwrap_or(deadline)));
        let mut expired = pin!(tokio::time::sleep_until(deadline));
        let mut last_error = None;
        loop {
            tokio::select! {
                Some((replica, id, result)) = attempts.next() => {
                    running.retain(|(_, i)| *i != id);
                    match result {
                        Ok(value) => {
                            self.cancel(&running);
                            return Ok(value);
                        }
                        Err(error) => {
                            let retry = match &error {
                                QueryError::Unavailable(_) => {
                                    self.mark_down(replica, &error);
                                    true
                                }
                                QueryError::Timeout(_) => true,
                                QueryError::Exception { .. } | QueryError::Protocol(_) => false,
                            };
                            if !retry {
                                self.cancel(&running);
                                return Err(error);
                            }
                            if !extra_used {
                                if let Some(other) = self.pick(Some(replica)) {
                                    if let Some(slot) = extra_slot() {
                                        extra_used = true;
                                        running.push((other, format!("{query_id}.retry")));
                                        attempts.push(attempt(other, AttemptKind::Retry, Some(slot)));
                                    }
                                }
                            }
                            if attempts.is_empty() {
                                return Err(error);
                            }
                            last_error = Some(error);
                        }
                    }
                }
                () = &mut hedge, if hedge_at.is_some() && !extra_used => {
                    extra_used = true;
                    if let Some(other) = self.pick(Some(first)) {
                        if let Some(slot) = extra_slot() {
                            running.push((other, format!("{query_id}.hedge")));
                            attempts.push(attempt(other, AttemptKind::Hedge, Some(slot)));
                        }
                    }
                }
                () = &mut expired => {
                    // A query that ran long says nothing of its replica's health: only
                    // probes and network failures do.
                    self.cancel(&running);
                    return Err(last_error
                        .filter(|e| !matches!(e, QueryError::Unavailable(_)))
                        .unwrap_or(QueryError::Timeout(self.query_timeout)));
                }
            }
        }
    }

    /// A network-level failure: down at once, whatever the probes said.
    fn mark_down(&self, replica: usize, cause: &QueryError) {
        if self.replicas[replica].set(Health::Down) != Health::Down {
            let shard = self.shard;
            tracing::warn!(shard, replica, error = %cause, "clickhouse replica marked down");
        }
    }

    /// Asks each server to stop the queries that lost or were abandoned; their HTTP
    /// requests are already dropped.
    fn cancel(&self, running: &[(usize, String)]) {
        for (replica, id) in running {
            let client = self.replicas[*replica].client.clone();
            let id = id.clone();
            tokio::spawn(async move {
                if let Err(error) = client.kill_query(&id, PROBE_TIMEOUT).await {
                    tracing::debug!(%error, query_id = %id, "could not kill a cancelled query");
                }
            });
        }
    }
}

/// Counts a query in flight on a replica while it lives.
struct InFlight<'a>(&'a AtomicUsize);

impl<'a> InFlight<'a> {
    fn new(count: &'a AtomicUsize) -> Self {
        count.fetch_add(1, Ordering::Relaxed);
        Self(count)
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn replicas(n: usize) -> Replicas {
        let settings = ClickHouseSettings::default();
        let urls: Vec<_> = (0..n)
            .map(|i| format!("http://127.0.0.1:{}", 9 + i))
            .collect();
        let metrics = crate::clickhouse::ClickHouseMetrics::register(&Default::default());
        let handles = (0..n).map(|i| metrics.replica(0, i)).collect();
        Replicas::new(&settings, 0, &urls, handles, None)
    }

    #[test]
    fn the_replica_with_fewest_queries_in_flight_is_chosen_and_ties_rotate() {
        let r = replicas(3);
        let picks: Vec<_> = (0..6).map(|_| r.pick(None).unwrap()).collect();
        assert_eq!(picks, [0, 1, 2, 0, 1, 2], "ties rotate");
        r.replicas[0].in_flight.store(2, Ordering::Relaxed);
        r.replicas[1].in_flight.store(1, Ordering::Relaxed);
        assert!((0..6).all(|_| r.pick(None) == Some(2)));
        assert!(
            (0..6).all(|_| r.pick(Some(2)) == Some(1)),
            "except the first attempt's"
        );
    }

    #[test]
    fn a_replica_marked_down_gets_nothing_until_a_probe_brings_it_up() {
        let r = replicas(2);
        r.mark_down(0, &QueryError::Unavailable("refused".into()));
        assert!((0..4).all(|_| r.pick(None) == Some(1)));
        assert_eq!(r.pick(Some(1)), None);
        r.replicas[1].set(Health::Down);
        assert_eq!(r.pick(None), None, "no healthy replica: fail at once");
        r.replicas[0].set(Health::Up);
        assert_eq!(r.pick(None), Some(0));
        assert_eq!(r.replicas[0].metrics.up.get(), 1);
        assert_eq!(r.replicas[1].metrics.up.get(), 0);
    }

    #[test]
    fn a_suspect_replica_gets_new_queries_only_when_none_is_healthy() {
        let r = replicas(2);
        r.replicas[0].set(Health::Suspect);
        r.replicas[1].set(Health::Up);
        r.replicas[1].in_flight.store(5, Ordering::Relaxed);
        assert!(
            (0..4).all(|_| r.pick(None) == Some(1)),
            "healthy, however busy"
        );
        assert_eq!(r.pick(Some(1)), Some(0), "a suspect one rather than none");
        r.replicas[1].set(Health::Down);
        assert_eq!(r.pick(None), Some(0));
        assert!(r.available());
        assert_eq!(
            r.replicas[0].metrics.up.get(),
            1,
            "suspect still counts as up"
        );
        assert_eq!(r.replicas[0].metrics.suspect.get(), 1);
        r.replicas[0].set(Health::Up);
        assert_eq!(r.replicas[0].metrics.suspect.get(), 0);
    }
}
