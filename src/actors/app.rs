//! `AppActor`: an app's actor. It applies the app's rate limit, answers cache hits at once
//! and hands misses to a task (which waits for a query slot), so its mailbox never waits on
//! ClickHouse.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

use actix::{Actor, Context, Handler, Message};
use prometheus::IntGauge;
use tokio::sync::oneshot;
use tracing::Instrument as _;

use super::policy::{AppPolicy, Leased, RateInfo, RateLimited};
use crate::cache::{FetchError, Front, Served};
use crate::domain::LogQuery;
use crate::encoding::Coding;
use crate::state::SharedCore;

/// One request for the app's logs; the answer goes back through `reply`.
pub struct Fetch {
    pub query: LogQuery,
    /// The tenant whose key asked (`None` with auth off).
    pub tenant: Option<Arc<str>>,
    pub request_id: String,
    /// The request's span: the miss task logs inside it.
    pub span: tracing::Span,
    /// The content coding the client accepts best (`None`: identity).
    pub coding: Option<Coding>,
    pub reply: oneshot::Sender<Reply>,
}

impl Message for Fetch {
    type Result = ();
}

/// Why the actor answered without a page.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ServeError {
    #[error(transparent)]
    RateLimited(#[from] RateLimited),
    #[error(transparent)]
    Fetch(#[from] FetchError),
}

pub struct Reply {
    pub rate: RateInfo,
    pub outcome: Result<Served, ServeError>,
}

/// What an actor shares with the registry: the messages sent to it and not yet handled
/// (the mailbox bound), and whether it handled one since the last sweep.
#[derive(Default)]
pub struct Activity {
    pub(super) queued: AtomicUsize,
    pub(super) touched: AtomicBool,
}

/// Called once when an actor stops, so whoever started it can forget it.
pub type OnStop = Box<dyn FnOnce() + Send>;

/// One actor of an app: on an HTTP worker thread it serves that worker's requests for
/// the app (the app has one such actor per worker, all sharing one `AppPolicy`); on a
/// dedicated arbiter it is the app's only actor. It stops when the registry, finding it
/// idle, drops its address.
pub struct AppActor {
    on_stop: Option<OnStop>,
    core: SharedCore,
    /// Shared with the registry: the mailbox bound and the idle sweep read it.
    activity: Arc<Activity>,
    policy: Arc<AppPolicy>,
    /// The pages this actor served last, for hits that skip moka's lookup.
    front: Front,
    /// `logproxy_app_actors`: counts this actor while it lives.
    alive: IntGauge,
}

impl AppActor {
    pub fn new(
        on_stop: OnStop,
        core: SharedCore,
        activity: Arc<Activity>,
        policy: Arc<AppPolicy>,
        alive: IntGauge,
    ) -> Self {
        Self {
            on_stop: Some(on_stop),
            core,
            activity,
            policy,
            front: Front::default(),
            alive,
        }
    }
}

impl Actor for AppActor {
    type Context = Context<Self>;

    fn started(&mut self, _ctx: &mut Self::Context) {
        self.alive.inc();
    }

    fn stopped(&mut self, _ctx: &mut Self::Context) {
        self.alive.dec();
        if let Some(on_stop) = self.on_stop.take() {
            on_stop();
        }
    }
}

impl Handler<Fetch> for AppActor {
    type Result = ();

    fn handle(&mut self, msg: Fetch, _ctx: &mut Self::Context) {
        self.touch();
        let Some(decided) = self.decide() else {
            // The fleet decides: a Redis round trip, as a task, so this mailbox moves on.
            let (core, policy) = (self.core.clone(), self.policy.clone());
            let span = msg.span.clone();
            let ask = async move {
                let decided = ask_fleet(&core, &policy, msg.query.app_id()).await;
                serve(&core, &policy, None, msg, decided);
            };
            actix::spawn(ask.instrument(span));
            return;
        };
        serve(
            &self.core,
            &self.policy,
            Some(&mut self.front),
            msg,
            decided,
        );
    }
}

/// Opening a live tail stream (CONTRACT.md §15): one request against the app's rate limit,
/// decided as a request for a page is.
pub struct Admit {
    pub app_id: Arc<str>,
    pub span: tracing::Span,
    pub reply: oneshot::Sender<Decided>,
}

impl Message for Admit {
    type Result = ();
}

/// A request admitted (with the quota left), or refused (with the quota and why).
pub type Decided = Result<RateInfo, (RateInfo, RateLimited)>;

impl Handler<Admit> for AppActor {
    type Result = ();

    fn handle(&mut self, msg: Admit, _ctx: &mut Self::Context) {
        self.touch();
        match self.decide() {
            Some(decided) => {
                let _ = msg.reply.send(decided);
            }
            None => {
                let (core, policy) = (self.core.clone(), self.policy.clone());
                let ask = async move {
                    let decided = ask_fleet(&core, &policy, &msg.app_id).await;
                    let _ = msg.reply.send(decided);
                };
                actix::spawn(ask.instrument(msg.span));
            }
        }
    }
}

impl AppActor {
    /// A message was handled: one fewer queued, and the actor is not idle.
    fn touch(&self) {
        self.activity.queued.fetch_sub(1, Ordering::AcqRel);
        self.activity.touched.store(true, Ordering::Relaxed);
    }

    /// The app's limit on one more request, when this process can tell without asking the
    /// fleet (no Redis, Redis down, or a lease in hand); `None`: ask the fleet.
    fn decide(&self) -> Option<Decided> {
        let fleet = self.core.fleet.as_ref().filter(|fleet| fleet.is_up());
        match fleet.map(|_| self.policy.spend_lease()) {
            None => Some(self.policy.admit()),
            Some(Leased::Admitted(rate)) => Some(Ok(rate)),
            Some(Leased::Refused(rate, refusal)) => Some(Err((rate, refusal))),
            Some(Leased::Ask) => None,
        }
    }
}

/// The fleet's decision on one request of the app; while Redis fails, the process's share
/// of the quota applies.
async fn ask_fleet(core: &SharedCore, policy: &AppPolicy, app_id: &str) -> Decided {
    let grant = match &core.fleet {
        Some(fleet) => fleet.take(app_id, policy.fleet_quota()).await,
        None => None,
    };
    grant.map_or_else(|| policy.admit(), |g| policy.settle(g))
}

/// Answers a request its app's limit decided on: refused, a hit at once (through the
/// actor's `front` when there is one), or a miss as a task of its own.
fn serve(
    core: &SharedCore,
    policy: &AppPolicy,
    front: Option<&mut Front>,
    msg: Fetch,
    decided: Decided,
) {
    let rate = match decided {
        Ok(rate) => rate,
        Err((rate, refusal)) => {
            let _ = msg.reply.send(Reply {
                rate,
                outcome: Err(refusal.into()),
            });
            return;
        }
    };
    let log_type = msg.query.log_type();
    let (key, limit) = (&msg.query.key, msg.query.limit);
    let hit = match front {
        Some(front) => core.cache.hit_in(front, key, limit, msg.coding),
        None => core.cache.hit(key, limit, msg.coding),
    };
    if let Some(served) = hit {
        core.count_served(log_type, &served);
        let _ = msg.reply.send(Reply {
            rate,
            outcome: Ok(served),
        });
        return;
    }
    // A miss: the query runs as its own task; the mailbox moves on at once.
    let core = core.clone();
    let busy = policy.busy_while();
    let Fetch {
        query,
        tenant,
        request_id,
        span,
        coding,
        reply,
    } = msg;
    let miss = async move {
        // Whose cache share and query slots the page and its query count in.
        let owner = core.live.load().auth.owner(query.app_id(), tenant.as_ref());
        let outcome = core
            .cache
            .get_or_fetch(query.key.clone(), query.limit, coding, &owner, |previous| {
                core.fetch_page(&owner, &query, &request_id, previous)
            })
            .await;
        drop(busy);
        if let Ok(served) = &outcome {
            core.count_served(log_type, served);
        }
        let _ = reply.send(Reply {
            rate,
            outcome: outcome.map_err(ServeError::from),
        });
    };
    actix::spawn(miss.instrument(span));
}
