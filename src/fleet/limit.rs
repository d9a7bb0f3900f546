//! The fleet's rate limit: one GCRA state per app in Redis, decided by a Lua script on
//! Redis's own clock, so every proxy spends the same quota and no clock skew between
//! proxies matters.

use std::sync::LazyLock;

use redis::Script;

use super::{Fleet, Op};

/// GCRA over microseconds (Lua numbers are doubles: exact up to 2^53, 285 years of
/// microseconds). KEYS[1]: the theoretical arrival time. ARGV: the emission interval in
/// microseconds, the burst, and how many requests to admit at most. Admits as many as the
/// state allows, up to that many, and returns {admitted, remaining, microseconds until the
/// burst is full again, microseconds until one more would be admitted (when none was)}.
static GCRA: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local interval = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local want = tonumber(ARGV[3])
local tolerance = interval * burst
local tat = tonumber(redis.call('GET', KEYS[1]))
if tat == nil or tat < now then tat = now end
local free = math.floor((now + tolerance - tat) / interval + 1e-6)
local n = math.min(want, free)
if n < 1 then
  return {0, 0, math.ceil(tat - now), math.ceil(tat + interval - tolerance - now)}
end
tat = tat + n * interval
redis.call('SET', KEYS[1], string.format('%.3f', tat), 'PX', math.ceil((tat - now) / 1000) + 1000)
return {n, math.floor((now + tolerance - tat) / interval + 1e-6), math.ceil(tat - now), 0}
",
    )
});

/// An app's quota as the fleet applies it, and how many requests one Redis call may take
/// ahead for this process (a lease, spent locally).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FleetQuota {
    pub requests_per_second: u32,
    pub burst: u32,
    pub lease: u32,
}

impl FleetQuota {
    /// A lease of 1% of a second's quota (at most a tenth of the burst, at least 1): a busy
    /// app makes about 100 Redis calls a second per process, whatever its traffic, and what a
    /// process leases but never spends is at most 1% of a second's quota.
    pub fn new(requests_per_second: u32, burst: u32) -> Self {
        Self {
            requests_per_second,
            burst,
            lease: (requests_per_second / 100).min(burst / 10).max(1),
        }
    }
}

/// What Redis decided for one call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Grant {
    /// Requests admitted (0: refused); up to the quota's `lease`.
    pub admitted: u32,
    /// Requests the fleet may still make at once.
    pub remaining: u32,
    pub until_full_us: u64,
    /// When refused: microseconds until a request would be admitted.
    pub retry_after_us: u64,
}

impl Fleet {
    /// Takes up to `quota.lease` requests of `app_id`'s fleet-wide quota; `None` when Redis
    /// failed (the caller applies the process's share instead).
    pub async fn take(&self, app_id: &str, quota: FleetQuota) -> Option<Grant> {
        let key = format!("{}rl:{app_id}", self.prefix);
        let interval_us = 1_000_000f64 / f64::from(quota.requests_per_second.max(1));
        let answer: Option<(u32, u32, u64, u64)> = self
            .call(Op::RateLimit, move |mut conn| async move {
                GCRA.key(key)
                    .arg(interval_us)
                    .arg(quota.burst.max(1))
                    .arg(quota.lease)
                    .invoke_async(&mut conn)
                    .await
            })
            .await;
        let (admitted, remaining, until_full_us, retry_after_us) = answer?;
        Some(Grant {
            admitted,
            remaining,
            until_full_us,
            retry_after_us,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lease_is_a_hundredth_of_a_second_within_a_tenth_of_the_burst() {
        assert_eq!(FleetQuota::new(20, 40).lease, 1);
        assert_eq!(FleetQuota::new(1_000, 2_000).lease, 10);
        assert_eq!(FleetQuota::new(1_000_000, 100).lease, 10);
        assert_eq!(FleetQuota::new(1_000_000, 5).lease, 1);
    }
}
