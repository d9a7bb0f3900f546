//! `AppPolicy`: what every actor of one app shares: its rate limit (governor GCRA) and
//! whether a miss of it is under way. With Redis the fleet decides the limit (`fleet::Fleet::take`) and the
//! policy keeps the lease it was granted; the local GCRA then holds the process's share
//! (`1/redis.fallback_fleet_size`), applied while Redis fails.

use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use governor::clock::{Clock, DefaultClock, Reference as _};
use governor::middleware::StateInformationMiddleware;
use governor::state::{InMemoryState, NotKeyed};
use governor::{Quota, RateLimiter};
use prometheus::IntCounter;

use crate::fleet::{FleetQuota, Grant};

/// How long requests leased from the fleet may be spent: a process that stops using its lease
/// lets at most this old a grant run ahead of the fleet's limit.
const LEASE_LIFE: Duration = Duration::from_secs(1);

/// The app's quota as the `X-RateLimit-*` headers show it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateInfo {
    pub limit: u32,
    pub remaining: u32,
    pub reset_seconds: u64,
}

/// A request refused by its app's rate limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("rate limited: {limit} requests per second, burst {burst}")]
pub struct RateLimited {
    pub limit: u32,
    pub burst: u32,
    /// Whole seconds until a request would be admitted, at least 1.
    pub retry_after: u64,
}

type Limiter<C> = RateLimiter<NotKeyed, InMemoryState, C, StateInformationMiddleware>;

/// One quota and the limiter that applies it (to `1/share` of it: the process's share).
struct Gcra<C: Clock> {
    limiter: Limiter<C>,
    quota: Quota,
    requests_per_second: u32,
    /// The app's whole quota (`quota` is the process's share of it).
    fleet: FleetQuota,
}

impl<C: Clock> Gcra<C> {
    fn new(rps: u32, burst: u32, share: u32, clock: C) -> Self {
        let nonzero = |n: u32| NonZeroU32::new(n).unwrap_or(NonZeroU32::MIN);
        let (rps_here, burst_here) = (rps.div_ceil(share), burst.div_ceil(share));
        let quota = Quota::per_second(nonzero(rps_here)).allow_burst(nonzero(burst_here));
        Self {
            limiter: RateLimiter::direct_with_clock(quota, clock)
                .with_middleware::<StateInformationMiddleware>(),
            quota,
            requests_per_second: rps_here,
            fleet: FleetQuota::new(rps, burst),
        }
    }
}

/// Requests the fleet admitted ahead for this process, and the quota as it then stood.
#[derive(Debug, Default)]
struct Lease {
    left: u32,
    /// Until when `left` may be spent, and the quota as the fleet showed it then.
    granted: Option<(Instant, RateInfo)>,
    /// After a refusal by the fleet: no request can be admitted before this (the GCRA
    /// state only moves forward), so until then the process refuses without asking.
    refused_until: Option<(Instant, RateInfo)>,
}

/// What this process can say about a request without asking the fleet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Leased {
    /// Admitted from the lease.
    Admitted(RateInfo),
    /// Refused: the fleet refused a request moments ago and admits none before this.
    Refused(RateInfo, RateLimited),
    /// Only the fleet can tell.
    Ask,
}

pub struct AppPolicy<C: Clock = DefaultClock> {
    /// Swapped whole when a reload changes the app's quota; kept (state and all) otherwise.
    gcra: ArcSwap<Gcra<C>>,
    /// 1 without Redis; `redis.fallback_fleet_size` with it.
    share: u32,
    lease: Mutex<Lease>,
    clock: C,
    /// Counts refusals (`logproxy_rate_limited_total`).
    refused: IntCounter,
    /// The app's misses under way (waiting for a slot or querying): the app is busy.
    misses: Arc<AtomicUsize>,
    epoch: C::Instant,
    /// The remaining burst after the last admitted or refused request (high 32 bits) and
    /// when that was, in milliseconds since `epoch` (low 32 bits), for `peek`.
    last: AtomicU64,
}

impl AppPolicy {
    /// A policy whose local limiter applies `1/share` of the quota (1: all of it).
    /// `requests_per_second` and `burst` must not be 0 (`Settings::check` refuses them; 1 is
    /// only a floor for hand-built settings).
    pub fn with_share(rps: u32, burst: u32, share: u32, refused: IntCounter) -> Self {
        Self::with_clock(rps, burst, share, refused, DefaultClock::default())
    }
}

impl<C: Clock + Clone> AppPolicy<C> {
    pub fn with_clock(rps: u32, burst: u32, share: u32, refused: IntCounter, clock: C) -> Self {
        let share = share.max(1);
        let gcra = Gcra::new(rps, burst, share, clock.clone());
        let full = u64::from(gcra.quota.burst_size().get()) << 32;
        Self {
            gcra: ArcSwap::from_pointee(gcra),
            share,
            lease: Mutex::new(Lease::default()),
            epoch: clock.now(),
            clock,
            refused,
            misses: Arc::default(),
            last: AtomicU64::new(full),
        }
    }

    /// Applies a (reloaded) quota: a new limiter, with a full burst, if it differs from the
    /// one in force; the limiter and its state stay otherwise. Whether it changed.
    pub fn set_quota(&self, rps: u32, burst: u32) -> bool {
        let current = self.gcra.load();
        if (current.fleet.requests_per_second, current.fleet.burst) == (rps, burst) {
            return false;
        }
        self.set_gcra(Gcra::new(rps, burst, self.share, self.clock.clone()));
        true
    }

    fn set_gcra(&self, gcra: Gcra<C>) {
        self.last.store(
            u64::from(gcra.quota.burst_size().get()) << 32,
            Ordering::Relaxed,
        );
        *self.lease.lock().unwrap_or_else(|e| e.into_inner()) = Lease::default();
        self.gcra.store(Arc::new(gcra));
    }

    /// The app's whole quota, for the fleet.
    pub fn fleet_quota(&self) -> FleetQuota {
        self.gcra.load().fleet
    }

    /// One request of what the fleet leased to this process, if any is left and not too old;
    /// or a refusal, while the fleet's last refusal holds.
    pub fn spend_lease(&self) -> Leased {
        let mut lease = self.lease.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        if let Some((until, rate)) = lease.refused_until {
            if now < until {
                drop(lease);
                self.refused.inc();
                return Leased::Refused(rate, self.fleet_refusal(until - now));
            }
            lease.refused_until = None;
        }
        match lease.granted {
            Some((until, rate)) if lease.left > 0 && now < until => {
                lease.left -= 1;
                Leased::Admitted(RateInfo {
                    remaining: rate.remaining + lease.left,
                    ..rate
                })
            }
            _ => Leased::Ask,
        }
    }

    /// The fleet's refusal of a request that could be admitted in `wait`.
    fn fleet_refusal(&self, wait: Duration) -> RateLimited {
        let quota = self.fleet_quota();
        RateLimited {
            limit: quota.requests_per_second,
            burst: quota.burst,
            retry_after: ceil_seconds(wait).max(1),
        }
    }

    /// Applies the fleet's decision on one request: admitted (keeping the rest of the
    /// grant as a lease) or refused.
    pub fn settle(&self, grant: Grant) -> Result<RateInfo, (RateInfo, RateLimited)> {
        let quota = self.fleet_quota();
        let rate = RateInfo {
            limit: quota.burst,
            remaining: grant.remaining,
            reset_seconds: grant.until_full_us.div_ceil(1_000_000),
        };
        if grant.admitted == 0 {
            self.remember(0);
            self.refused.inc();
            let wait = Duration::from_micros(grant.retry_after_us);
            self.lease
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .refused_until = Some((Instant::now() + wait, rate));
            return Err((rate, self.fleet_refusal(wait)));
        }
        let leased = grant.admitted - 1;
        let now = Instant::now();
        let mut lease = self.lease.lock().unwrap_or_else(|e| e.into_inner());
        let live = match lease.granted {
            Some((until, _)) if now < until => lease.left,
            _ => 0,
        };
        // Added, not replaced: requests that asked at the same moment each bring a grant,
        // and none of what the fleet granted is lost.
        let held = live + leased;
        if leased > 0 {
            lease.left = held;
            lease.granted = Some((now + LEASE_LIFE, rate));
        }
        let remaining = grant.remaining + held;
        drop(lease);
        self.remember(remaining);
        Ok(RateInfo { remaining, ..rate })
    }

    fn now_ms(&self) -> u32 {
        let since = self.clock.now().duration_since(self.epoch);
        Duration::from(since).as_millis() as u32
    }

    fn remember(&self, remaining: u32) {
        let at = u64::from(remaining) << 32 | u64::from(self.now_ms());
        self.last.store(at, Ordering::Relaxed);
    }

    /// The quota as it stands, without counting a request: for answers that did not reach
    /// the limiter (400, 422, a full mailbox). GCRA refills one request per interval.
    pub fn peek(&self) -> RateInfo {
        let gcra = self.gcra.load();
        let burst = gcra.quota.burst_size().get();
        let last = self.last.load(Ordering::Relaxed);
        let (remaining, at_ms) = ((last >> 32) as u32, last as u32);
        let since = self.now_ms().wrapping_sub(at_ms);
        let interval_ms = gcra.quota.replenish_interval().as_millis().max(1) as u64;
        let refilled = (u64::from(since) / interval_ms).min(u64::from(burst)) as u32;
        rate(&gcra.quota, remaining.saturating_add(refilled).min(burst))
    }

    /// Counts one request against the app's quota.
    pub fn admit(&self) -> Result<RateInfo, (RateInfo, RateLimited)> {
        let gcra = self.gcra.load();
        let burst = gcra.quota.burst_size().get();
        match gcra.limiter.check() {
            Ok(snapshot) => {
                let remaining = snapshot.remaining_burst_capacity();
                self.remember(remaining);
                Ok(rate(&gcra.quota, remaining))
            }
            Err(not_until) => {
                self.remember(0);
                self.refused.inc();
                let wait = not_until.wait_time_from(self.clock.now());
                let rate = RateInfo {
                    limit: burst,
                    remaining: 0,
                    reset_seconds: ceil_seconds(gcra.quota.burst_size_replenished_in()),
                };
                let refusal = RateLimited {
                    limit: gcra.requests_per_second,
                    burst,
                    retry_after: ceil_seconds(wait).max(1),
                };
                Err((rate, refusal))
            }
        }
    }

    /// Whether a miss of this app waits for a query slot or queries now.
    pub fn busy(&self) -> bool {
        self.misses.load(Ordering::Acquire) > 0
    }

    /// Marks the app busy until the guard is dropped (a miss under way).
    pub fn busy_while(&self) -> Busy {
        self.misses.fetch_add(1, Ordering::AcqRel);
        Busy(self.misses.clone())
    }
}

/// An app's miss under way; the app is busy while it lives.
pub struct Busy(Arc<AtomicUsize>);

impl Drop for Busy {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// The headers' view of `quota` with `remaining` requests left of the burst.
fn rate(quota: &Quota, remaining: u32) -> RateInfo {
    let burst = quota.burst_size().get();
    RateInfo {
        limit: burst,
        remaining,
        reset_seconds: ceil_seconds(quota.replenish_interval() * (burst - remaining)),
    }
}

fn ceil_seconds(d: Duration) -> u64 {
    d.as_nanos().div_ceil(1_000_000_000) as u64
}

#[cfg(test)]
mod tests {
    use governor::clock::FakeRelativeClock;

    use super::*;

    fn policy(rps: u32, burst: u32) -> (AppPolicy<FakeRelativeClock>, FakeRelativeClock) {
        let clock = FakeRelativeClock::default();
        let refused = IntCounter::new("refused", "test").unwrap();
        (
            AppPolicy::with_clock(rps, burst, 1, refused, clock.clone()),
            clock,
        )
    }

    #[test]
    fn the_burst_is_admitted_then_refused_with_retry_after_until_time_refills_it() {
        let (p, clock) = policy(2, 3);
        for left in [2, 1, 0] {
            assert_eq!(p.admit().unwrap().remaining, left);
        }
        let (rate, refusal) = p.admit().unwrap_err();
        assert_eq!((rate.limit, rate.remaining, rate.reset_seconds), (3, 0, 2));
        assert_eq!(
            refusal,
            RateLimited {
                limit: 2,
                burst: 3,
                retry_after: 1
            }
        );
        assert_eq!(p.refused.get(), 1);

        clock.advance(Duration::from_millis(500));
        assert_eq!(p.admit().unwrap().remaining, 0, "one interval: one request");
        assert!(p.admit().is_err());
        clock.advance(Duration::from_secs(10));
        let rate = p.admit().unwrap();
        assert_eq!((rate.remaining, rate.reset_seconds), (2, 1));
    }

    #[test]
    fn peek_shows_the_quota_without_spending_it_and_refills_with_time() {
        let (p, clock) = policy(10, 5);
        assert_eq!(p.peek().remaining, 5);
        for _ in 0..5 {
            p.admit().unwrap();
        }
        assert_eq!(p.peek().remaining, 0);
        assert_eq!(p.peek().remaining, 0, "peeking spends nothing");
        clock.advance(Duration::from_millis(250));
        assert_eq!(p.peek().remaining, 2);
        clock.advance(Duration::from_secs(60));
        assert_eq!(p.peek(), rate(&p.gcra.load().quota, 5));
        assert_eq!(p.peek().reset_seconds, 0);
    }

    #[test]
    fn a_reload_keeps_the_limiter_of_an_unchanged_quota_and_replaces_a_changed_one() {
        let (p, _) = policy(1, 2);
        p.admit().unwrap();
        p.admit().unwrap();
        assert!(!p.set_quota(1, 2), "same quota: nothing changes");
        assert!(p.admit().is_err(), "its state was kept");
        assert!(p.set_quota(100, 50));
        assert_eq!(p.peek().limit, 50);
        assert_eq!(p.admit().unwrap().remaining, 49, "a new quota starts full");
    }

    fn grant(admitted: u32, remaining: u32) -> Grant {
        Grant {
            admitted,
            remaining,
            until_full_us: 1_500_000,
            retry_after_us: if admitted == 0 { 200_000 } else { 0 },
        }
    }

    #[test]
    fn a_fleet_grant_admits_one_request_and_leases_the_rest_adding_up_concurrent_grants() {
        let (p, _) = policy(1000, 100);
        assert_eq!(p.fleet_quota().lease, 10);
        assert_eq!(p.spend_lease(), Leased::Ask, "nothing leased yet");
        let rate = p.settle(grant(10, 50)).unwrap();
        assert_eq!(
            (rate.limit, rate.remaining, rate.reset_seconds),
            (100, 59, 2)
        );
        p.settle(grant(10, 40)).unwrap();
        let leased = (0..18)
            .filter(|_| matches!(p.spend_lease(), Leased::Admitted(_)))
            .count();
        assert_eq!(leased, 18, "9 + 9 leased");
        assert_eq!(p.spend_lease(), Leased::Ask);

        let (rate, refusal) = p.settle(grant(0, 0)).unwrap_err();
        assert_eq!(
            (rate.remaining, refusal.retry_after, refusal.limit),
            (0, 1, 1000)
        );
        // For the 200 ms the fleet said, the process refuses by itself.
        assert_eq!(p.spend_lease(), Leased::Refused(rate, refusal));
        assert_eq!(p.refused.get(), 2);
        std::thread::sleep(Duration::from_millis(250));
        assert_eq!(p.spend_lease(), Leased::Ask, "then it asks again");
    }

    #[test]
    fn with_a_share_the_local_limiter_applies_a_part_of_the_quota() {
        let refused = IntCounter::new("refused", "test").unwrap();
        let p = AppPolicy::with_share(20, 10, 3, refused);
        assert_eq!(p.fleet_quota(), FleetQuota::new(20, 10));
        let admitted = (0..20).filter(|_| p.admit().is_ok()).count();
        assert_eq!(admitted, 4, "a burst of 10 / 3, rounded up");
    }

    #[test]
    fn a_miss_under_way_makes_the_app_busy() {
        let (p, _) = policy(1, 1);
        assert!(!p.busy());
        let (one, two) = (p.busy_while(), p.busy_while());
        assert!(p.busy());
        drop(one);
        assert!(p.busy());
        drop(two);
        assert!(!p.busy());
    }
}
