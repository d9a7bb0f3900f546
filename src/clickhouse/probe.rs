//! The probe of one replica: both tables there and, on a cluster, the cluster's layout in
//! `system.clusters` as configured. Every `health_check_interval_ms`; every 100 ms while no
//! replica of its shard is up, so service resumes within 250 ms of ClickHouse answering
//! again (CONTRACT.md §12).

use std::sync::Weak;
use std::time::Duration;

use super::replicas::{Health, Replica, Replicas, PROBE_TIMEOUT};
use super::QueryError;

/// How often replicas are probed while none of their shard is up.
pub const FAST_PROBE: Duration = Duration::from_millis(100);

pub(super) async fn probe_loop(replicas: Weak<Replicas>, index: usize) {
    let mut first = true;
    loop {
        let Some(this) = replicas.upgrade() else {
            return;
        };
        let replica = &this.replicas[index];
        let (shard, health) = (this.shard, probe(&this, replica).await);
        let was = replica.set(health);
        if was == Health::Down && health == Health::Up {
            tracing::info!(shard, replica = index, "clickhouse replica is up again");
        }
        if health == Health::Down {
            // Whatever marked it down first, the queries still waiting there give up.
            replica.went_down.notify_waiters();
        }
        if first {
            first = false;
            let all = this.replicas.iter().all(|r| r.health() != Health::Unknown);
            if all {
                this.probed.send_replace(true);
            }
        }
        let none_up = this.replicas.iter().all(|r| r.health() != Health::Up);
        let interval = match none_up {
            true => FAST_PROBE.min(this.probe_interval),
            false => this.probe_interval,
        };
        drop(this);
        tokio::time::sleep(interval).await;
    }
}

/// One probe: `Up`, or `Down` with the reason kept for `/readyz` when an operator can act
/// on it.
async fn probe(this: &Replicas, replica: &Replica) -> Health {
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
            return Health::Up;
        }
        Err(error) => error,
    };
    if replica.health() != Health::Down {
        let (shard, index) = (this.shard, this.index_of(replica));
        tracing::warn!(shard, replica = index, %error, "clickhouse replica probe failed");
    }
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
    Health::Down
}
