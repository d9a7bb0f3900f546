//! The probe of one replica: both tables there and, on a cluster, the cluster's layout in
//! `system.clusters` as configured. Every `health_check_interval_ms`; every 100 ms while every
//! replica of its shard is down, so service resumes within 250 ms of ClickHouse answering
//! again (CONTRACT.md §12). A probe that times out makes its replica suspect; so many in a
//! row (`probe_failures_to_down`) make it down; any other failure makes it down at once
//! (CONTRACT.md §6, "Slowness is not death").

use std::sync::atomic::Ordering;
use std::sync::{Arc, Weak};
use std::time::Duration;

use super::replicas::{Health, Replica, Replicas, PROBE_TIMEOUT};
use super::QueryError;

/// How often replicas are probed while all of their shard are down.
pub const FAST_PROBE: Duration = Duration::from_millis(100);

impl Replicas {
    /// Probes every replica now and then every `health_check_interval_ms`, for as long as
    /// `this` lives. Call inside a Tokio runtime.
    pub fn spawn_probes(this: &Arc<Self>) {
        for index in 0..this.replicas.len() {
            let weak = Arc::downgrade(this);
            tokio::spawn(probe_loop(weak, index));
        }
    }

    /// The index of `replica` in this set.
    fn index_of(&self, replica: &Replica) -> usize {
        self.replicas
            .iter()
            .position(|r| std::ptr::eq(r, replica))
            .unwrap_or(usize::MAX)
    }
}

async fn probe_loop(replicas: Weak<Replicas>, index: usize) {
    let mut first = true;
    loop {
        let Some(this) = replicas.upgrade() else {
            return;
        };
        let replica = &this.replicas[index];
        let (shard, health) = (
            this.shard,
            judge(&this, replica, probe(&this, replica).await),
        );
        let was = replica.set(health);
        if matches!(was, Health::Down | Health::Suspect) && health == Health::Up {
            tracing::info!(shard, replica = index, "clickhouse replica is up again");
        }
        if first {
            first = false;
            let all = this.replicas.iter().all(|r| r.health() != Health::Unknown);
            if all {
                this.probed.send_replace(true);
            }
        }
        let all_down = this.replicas.iter().all(|r| r.health() == Health::Down);
        let interval = match all_down {
            true => FAST_PROBE.min(this.probe_interval),
            false => this.probe_interval,
        };
        drop(this);
        tokio::time::sleep(interval).await;
    }
}

/// The state a probe's result leaves the replica in: `Up` after a success; after a timeout,
/// `Suspect` until `failures_to_down` failed in a row (`Down` for a replica never seen up or
/// down already); `Down` at once after any other failure (refused, reset, tables missing, a
/// wrong cluster).
fn judge(this: &Replicas, replica: &Replica, probed: Result<(), QueryError>) -> Health {
    let error = match probed {
        Ok(()) => {
            replica.failed_probes.store(0, Ordering::Relaxed);
            return Health::Up;
        }
        Err(error) => error,
    };
    let failed = replica.failed_probes.fetch_add(1, Ordering::Relaxed) + 1;
    let was = replica.health();
    let health = match error {
        // Slow, not dead, only for a replica that has answered: one never seen up (at
        // start-up) or already down stays unready.
        QueryError::Timeout(_) if failed < this.failures_to_down && was.answering() => {
            Health::Suspect
        }
        _ => Health::Down,
    };
    if was != Health::Down {
        let (shard, index) = (this.shard, this.index_of(replica));
        let state = if health == Health::Down {
            "down"
        } else {
            "suspect"
        };
        tracing::warn!(shard, replica = index, %error, failed, state, "clickhouse replica probe failed");
    }
    health
}

/// One probe; a failure's reason is kept for `/readyz` when an operator can act on it.
async fn probe(this: &Replicas, replica: &Replica) -> Result<(), QueryError> {
    let checked = async {
        replica.client.probe(PROBE_TIMEOUT).await?;
        let (Some(expected), Some(found)) = (
            &this.expected,
            replica.client.cluster_layout(PROBE_TIMEOUT).await?,
        ) else {
            return Ok(());
        };
        if *expected == found {
            return Ok(());
        }
        Err(QueryError::Exception {
            code: None,
            message: format!(
                "the cluster's shards in system.clusters (weights {found:?}) are not \
                 clickhouse.shards (weights {expected:?}): apps would be read from the wrong shards"
            ),
        })
    };
    let error = match checked.await {
        Ok(()) => {
            *replica.problem.lock().unwrap_or_else(|e| e.into_inner()) = None;
            return Ok(());
        }
        Err(error) => error,
    };
    // Network errors may name hosts; an operator reads those in the log.
    let reason = match &error {
        QueryError::Exception {
            code: None,
            message,
        } => message.clone(),
        QueryError::Exception { .. } | QueryError::Protocol(_) => "clickhouse error".into(),
        QueryError::Unavailable(_) => "unreachable".into(),
        QueryError::Timeout(_) => "no answer within the probe timeout".into(),
    };
    *replica.problem.lock().unwrap_or_else(|e| e.into_inner()) = Some(reason);
    Err(error)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::ClickHouseSettings;

    fn one_replica(failures_to_down: u32) -> Replicas {
        let settings = ClickHouseSettings {
            probe_failures_to_down: failures_to_down,
            ..ClickHouseSettings::default()
        };
        let metrics = crate::clickhouse::ClickHouseMetrics::register(&Default::default());
        let urls = ["http://127.0.0.1:9".to_owned()];
        Replicas::new(&settings, 0, &urls, vec![metrics.replica(0, 0)], None)
    }

    /// Applies one probe result the way the probe loop does.
    fn after(this: &Replicas, probed: Result<(), QueryError>) -> Health {
        let replica = &this.replicas[0];
        let health = judge(this, replica, probed);
        replica.set(health);
        health
    }

    fn timeout() -> Result<(), QueryError> {
        Err(QueryError::Timeout(PROBE_TIMEOUT))
    }

    #[test]
    fn probe_timeouts_make_a_replica_suspect_and_down_only_after_so_many_in_a_row() {
        let r = one_replica(3);
        assert_eq!(after(&r, Ok(())), Health::Up);
        assert_eq!(after(&r, timeout()), Health::Suspect);
        assert_eq!(after(&r, timeout()), Health::Suspect);
        assert_eq!(
            after(&r, Ok(())),
            Health::Up,
            "one success clears the count"
        );
        assert_eq!(after(&r, timeout()), Health::Suspect);
        assert_eq!(after(&r, timeout()), Health::Suspect);
        assert_eq!(after(&r, timeout()), Health::Down, "the third in a row");
        assert_eq!(
            after(&r, timeout()),
            Health::Down,
            "a timeout never lifts down"
        );
        assert_eq!(after(&r, Ok(())), Health::Up);
    }

    #[test]
    fn a_refused_probe_makes_a_replica_down_at_once() {
        let r = one_replica(3);
        assert_eq!(after(&r, Ok(())), Health::Up);
        let refused = Err(QueryError::Unavailable("connection refused".into()));
        assert_eq!(after(&r, refused), Health::Down);
        let r = one_replica(1);
        assert_eq!(
            after(&r, timeout()),
            Health::Down,
            "probe_failures_to_down = 1"
        );
    }
}
