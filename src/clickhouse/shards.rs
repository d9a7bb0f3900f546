//! `Shards`: where each app's logs live (CONTRACT.md §13). Without a cluster, one shard: the
//! replicas of §6. With `clickhouse.shards`, an app lives on the shard ClickHouse's own
//! Distributed engine writes it to, `sipHash64(app_id)` modulo the sum of the weights,
//! falling into the shards' weight ranges in order; its queries go to that shard's local
//! tables only, through that shard's replicas (probes, retry, hedging, fail-fast).

use std::hash::Hasher as _;
use std::sync::Arc;

use serde::Serialize;

use super::metrics::ReplicaMetrics;
use super::replicas::{Health, ReplicaStatus};
use super::{ChClient, Replicas};
use crate::config::ClickHouseSettings;

pub struct Shards {
    shards: Vec<Arc<Replicas>>,
    /// Each shard's weight range ends: shard `i` takes the keys below `ends[i]` (and at or
    /// above `ends[i - 1]`), of `0..total`.
    ends: Vec<u64>,
    weights: Vec<u32>,
}

/// One shard in `/readyz`.
#[derive(Debug, Clone, Serialize)]
pub struct ShardStatus {
    pub shard: usize,
    pub weight: u32,
    /// `up` while one of its replicas is, else `suspect` while one of them is.
    pub state: Health,
    pub replicas: Vec<ReplicaStatus>,
}

/// ClickHouse's `sipHash64` of one string: SipHash-2-4 with a zero key, over its bytes.
pub fn sip_hash64(text: &str) -> u64 {
    let mut hasher = siphasher::sip::SipHasher24::new_with_keys(0, 0);
    hasher.write(text.as_bytes());
    hasher.finish()
}

impl Shards {
    /// The shards of `settings` (one, of its replicas, without a cluster), with the metric
    /// handles `metrics(shard, replica)`.
    pub fn new(
        settings: &ClickHouseSettings,
        metrics: impl Fn(usize, usize) -> ReplicaMetrics,
    ) -> Self {
        let list = settings.shard_list();
        let weights: Vec<u32> = list.iter().map(|s| s.weight).collect();
        let expected = settings.is_cluster().then(|| weights.clone());
        let shards = list
            .iter()
            .enumerate()
            .map(|(shard, s)| {
                let handles = (0..s.urls.len()).map(|r| metrics(shard, r)).collect();
                Arc::new(Replicas::new(
                    settings,
                    shard,
                    &s.urls,
                    handles,
                    expected.clone(),
                ))
            })
            .collect();
        let ends = weights
            .iter()
            .scan(0u64, |sum, w| {
                *sum += u64::from(*w);
                Some(*sum)
            })
            .collect();
        Self {
            shards,
            ends,
            weights,
        }
    }

    /// Probes every replica of every shard (see `Replicas::spawn_probes`).
    pub fn spawn_probes(&self) {
        self.shards.iter().for_each(Replicas::spawn_probes);
    }

    /// The index of the shard that holds `app_id`'s logs.
    pub fn shard_of(&self, app_id: &str) -> usize {
        if self.shards.len() == 1 {
            return 0;
        }
        let total = *self.ends.last().expect("at least one shard");
        let key = sip_hash64(app_id) % total;
        self.ends.partition_point(|&end| end <= key)
    }

    /// The replicas of the shard that holds `app_id`'s logs.
    pub fn for_app(&self, app_id: &str) -> &Arc<Replicas> {
        &self.shards[self.shard_of(app_id)]
    }

    /// The first replica's client of the first shard, for tools.
    pub fn first(&self) -> &ChClient {
        self.shards[0].first()
    }

    /// Every shard's state.
    pub fn status(&self) -> Vec<ShardStatus> {
        self.shards
            .iter()
            .zip(&self.weights)
            .enumerate()
            .map(|(shard, (replicas, weight))| {
                let replicas = replicas.status();
                let any = |state| replicas.iter().any(|r| r.state == state);
                let state = match (any(Health::Up), any(Health::Suspect)) {
                    (true, _) => Health::Up,
                    (false, true) => Health::Suspect,
                    (false, false) => Health::Down,
                };
                ShardStatus {
                    shard,
                    weight: *weight,
                    state,
                    replicas,
                }
            })
            .collect()
    }

    /// Whether some shard has a healthy replica (waiting, up to a probe timeout, for the
    /// first round of probes after start-up).
    pub async fn ready(&self) -> bool {
        let mut ready = false;
        for shard in &self.shards {
            ready |= shard.ready().await;
        }
        ready
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::ShardSettings;

    fn shards(weights: &[u32]) -> Shards {
        let settings = ClickHouseSettings {
            cluster: "logs".into(),
            shards: weights
                .iter()
                .enumerate()
                .map(|(i, &weight)| ShardSettings {
                    urls: vec![format!("http://127.0.0.1:{}", 9 + i)],
                    weight,
                })
                .collect(),
            ..ClickHouseSettings::default()
        };
        let metrics = crate::clickhouse::ClickHouseMetrics::register(&Default::default());
        Shards::new(&settings, |s, r| metrics.replica(s, r))
    }

    #[test]
    fn sip_hash64_is_clickhouses_for_strings() {
        // `SELECT sipHash64('...')` on ClickHouse 18.16.
        assert_eq!(sip_hash64("demo-app-1"), 9_210_039_941_774_606_105);
        assert_eq!(sip_hash64(""), 2_202_906_307_356_721_367);
        assert_eq!(sip_hash64("abcdefgh"), 16_599_038_366_039_810_451);
    }

    #[test]
    fn an_app_falls_into_the_weight_range_of_its_hash_modulo_the_total() {
        let equal = shards(&[1, 1]);
        let uneven = shards(&[2, 1]);
        for i in 0..200 {
            let app = format!("app-{i}");
            let h = sip_hash64(&app);
            assert_eq!(equal.shard_of(&app), (h % 2) as usize, "{app}");
            assert_eq!(uneven.shard_of(&app), usize::from(h % 3 == 2), "{app}");
        }
        let one = shards(&[3]);
        assert_eq!(one.shard_of("anything"), 0);
    }
}
