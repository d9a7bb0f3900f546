//! `AppActor`: an app's actor. It applies the app's rate limit, answers cache hits at once
//! and hands misses to a task (which takes one of the app's query slots), so its mailbox
//! never waits on ClickHouse.

use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::{Actor, ActorContext, AsyncContext, Context, Handler, Message};
use governor::clock::{Clock, DefaultClock};
use governor::middleware::StateInformationMiddleware;
use governor::state::{InMemoryState, NotKeyed};
use governor::{Quota, RateLimiter};
use tokio::sync::{oneshot, Semaphore};

use super::registry::Home;
use crate::api::error::ApiError;
use crate::api::params::LogQuery;
use crate::cache::{CacheKey, Served};
use crate::state::{Core, SharedCore};

type Limiter = RateLimiter<NotKeyed, InMemoryState, DefaultClock, StateInformationMiddleware>;

/// One request for the app's logs; the answer goes back through `reply`.
pub struct Fetch {
    pub query: LogQuery,
    pub request_id: String,
    pub reply: oneshot::Sender<Reply>,
}

impl Message for Fetch {
    type Result = ();
}

/// The app's quota as the `X-RateLimit-*` headers show it.
#[derive(Debug, Clone, Copy)]
pub struct RateInfo {
    pub limit: u32,
    pub remaining: u32,
    pub reset_seconds: u64,
}

pub struct Reply {
    pub rate: RateInfo,
    pub outcome: Result<Served, ApiError>,
}

/// What every actor of one app shares: its rate limit and its query slots.
pub struct AppPolicy {
    limiter: Limiter,
    quota: Quota,
    requests_per_second: u32,
    slots: Arc<Semaphore>,
    slot_count: usize,
    epoch: Instant,
    /// The remaining burst after the last admitted or refused request (high 32 bits) and
    /// when that was, in milliseconds since `epoch` (low 32 bits), for `peek`.
    last: AtomicU64,
}

impl AppPolicy {
    pub(super) fn new(app_id: &str, settings: &crate::config::Settings) -> Self {
        let (rps, burst) = settings.rate_limit.for_app(app_id);
        // `Settings::check` refused zeros; 1 is only a floor for hand-built settings.
        let nonzero = |n: u32| NonZeroU32::new(n).unwrap_or(NonZeroU32::MIN);
        let quota = Quota::per_second(nonzero(rps)).allow_burst(nonzero(burst));
        let slot_count = settings.clickhouse.max_concurrent_queries_per_app;
        Self {
            limiter: RateLimiter::direct(quota).with_middleware::<StateInformationMiddleware>(),
            quota,
            requests_per_second: rps,
            slots: Arc::new(Semaphore::new(slot_count)),
            slot_count,
            epoch: Instant::now(),
            last: AtomicU64::new(u64::from(burst) << 32),
        }
    }

    fn remember(&self, remaining: u32) {
        let ms = self.epoch.elapsed().as_millis() as u32;
        self.last.store(
            u64::from(remaining) << 32 | u64::from(ms),
            Ordering::Relaxed,
        );
    }

    /// The quota as it stands, without counting a request: for answers that did not reach
    /// the limiter (400, 422, a full mailbox). GCRA refills one request per interval.
    pub fn peek(&self) -> RateInfo {
        let burst = self.quota.burst_size().get();
        let last = self.last.load(Ordering::Relaxed);
        let (remaining, at_ms) = ((last >> 32) as u32, last as u32);
        let since = (self.epoch.elapsed().as_millis() as u32).wrapping_sub(at_ms);
        let interval_ms = self.quota.replenish_interval().as_millis().max(1) as u64;
        let refilled = (u64::from(since) / interval_ms).min(u64::from(burst)) as u32;
        self.rate(remaining.saturating_add(refilled).min(burst))
    }

    /// The headers' view of the quota with `remaining` requests left of the burst.
    fn rate(&self, remaining: u32) -> RateInfo {
        let burst = self.quota.burst_size().get();
        RateInfo {
            limit: burst,
            remaining,
            reset_seconds: ceil_seconds(self.quota.replenish_interval() * (burst - remaining)),
        }
    }

    /// Counts one request against the app's quota.
    fn admit(&self, core: &Core) -> Result<RateInfo, (RateInfo, ApiError)> {
        let burst = self.quota.burst_size().get();
        match self.limiter.check() {
            Ok(snapshot) => {
                let remaining = snapshot.remaining_burst_capacity();
                self.remember(remaining);
                Ok(self.rate(remaining))
            }
            Err(not_until) => {
                self.remember(0);
                core.metrics.rate_limited.inc();
                let wait = not_until.wait_time_from(self.limiter.clock().now());
                let rate = RateInfo {
                    limit: burst,
                    remaining: 0,
                    reset_seconds: ceil_seconds(self.quota.burst_size_replenished_in()),
                };
                let error = ApiError::RateLimited {
                    limit: self.requests_per_second,
                    burst,
                    retry_after: ceil_seconds(wait).max(1),
                };
                Err((rate, error))
            }
        }
    }

    /// Whether a query of this app holds a slot now.
    fn busy(&self) -> bool {
        self.slots.available_permits() < self.slot_count
    }
}

/// One actor of an app: on an HTTP worker thread it serves that worker's requests for
/// the app (the app has one such actor per worker, all sharing one `AppPolicy`); on a
/// dedicated arbiter it is the app's only actor.
pub struct AppActor {
    home: Home,
    core: SharedCore,
    /// Messages sent to this actor and not yet handled (the registry's mailbox bound).
    queued: Arc<AtomicUsize>,
    policy: Arc<AppPolicy>,
    idle_timeout: Duration,
    last_seen: Instant,
}

impl AppActor {
    pub(super) fn new(
        home: Home,
        core: SharedCore,
        queued: Arc<AtomicUsize>,
        policy: Arc<AppPolicy>,
    ) -> Self {
        Self {
            idle_timeout: Duration::from_secs(core.settings.actors.idle_timeout_seconds),
            last_seen: Instant::now(),
            home,
            core,
            queued,
            policy,
        }
    }
}

fn ceil_seconds(d: Duration) -> u64 {
    d.as_nanos().div_ceil(1_000_000_000) as u64
}

impl Actor for AppActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        self.core.metrics.app_actors.inc();
        let every =
            (self.idle_timeout / 4).clamp(Duration::from_millis(50), Duration::from_secs(30));
        ctx.run_interval(every, |actor, ctx| {
            let busy = actor.policy.busy() || actor.queued.load(Ordering::Acquire) > 0;
            if !busy && actor.last_seen.elapsed() >= actor.idle_timeout {
                ctx.stop();
            }
        });
    }

    fn stopped(&mut self, _ctx: &mut Self::Context) {
        self.core.metrics.app_actors.dec();
        self.home.forget(&self.policy);
    }
}

impl Handler<Fetch> for AppActor {
    type Result = ();

    fn handle(&mut self, msg: Fetch, _ctx: &mut Self::Context) {
        self.queued.fetch_sub(1, Ordering::AcqRel);
        self.last_seen = Instant::now();
        let rate = match self.policy.admit(&self.core) {
            Ok(rate) => rate,
            Err((rate, error)) => {
                let _ = msg.reply.send(Reply {
                    rate,
                    outcome: Err(error),
                });
                return;
            }
        };
        let key = CacheKey::from(&msg.query);
        let log_type = msg.query.log_type.as_str();
        if let Some(served) = self.core.cache.hit(&key, msg.query.limit) {
            self.core.count_cache(log_type, served.result);
            let _ = msg.reply.send(Reply {
                rate,
                outcome: Ok(served),
            });
            return;
        }
        // A miss: the query runs as its own task; this mailbox moves on at once.
        let core = self.core.clone();
        let slots = self.policy.slots.clone();
        actix::spawn(async move {
            let Fetch {
                query,
                request_id,
                reply,
            } = msg;
            let outcome = core
                .cache
                .get_or_fetch(key, query.limit, || {
                    core.fetch_page(&slots, &query, &request_id)
                })
                .await;
            if let Ok(served) = &outcome {
                core.count_cache(log_type, served.result);
            }
            let _ = reply.send(Reply { rate, outcome });
        });
    }
}
