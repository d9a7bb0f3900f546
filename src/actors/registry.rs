//! `Registry`: app_id -> the app's actor. Starts actors on first use, spreads them over
//! arbiters, stops idle ones and forgets them.
//!
//! With `actors.arbiters = 0` (the default) the HTTP workers' own arbiters host the actors,
//! and each worker gets its own actor for an app, so a request never crosses threads to
//! reach it; the app's actors share one `AppPolicy` (rate limit, misses under way). With
//! `actors.arbiters = N` a dedicated pool of N arbiters hosts one actor per app.

use std::cell::Cell;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, RwLock, Weak};
use std::time::{Duration, Instant};

use actix::dev::{channel, SendError};
use actix::{Addr, Arbiter, ArbiterHandle, Context};
use dashmap::DashMap;

use actix::{Handler, Message};

use super::app::{Activity, Admit, AppActor, Fetch};
use super::metrics::ActorMetrics;
use super::policy::{AppPolicy, RateInfo};
use crate::state::SharedCore;

thread_local! {
    /// The index of this thread in its registry's hosts, on HTTP worker threads.
    static HOST: Cell<Option<usize>> = const { Cell::new(None) };
}

/// The key of an actor that serves every thread (dedicated arbiters, or no host here).
const ANY_HOST: usize = usize::MAX;

/// Why a request could not be handed to its app's actor.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SendFailure {
    /// `actors.mailbox_capacity` messages are already waiting.
    #[error("the app's mailbox is full")]
    MailboxFull,
    /// The actor stopped twice in a row between lookup and send.
    #[error("the app's actor closed twice in a row")]
    Closed,
}

/// What `Registry::try_send` did with a message.
enum Sent<M> {
    Queued,
    /// `actors.mailbox_capacity` messages are already waiting.
    Full,
    /// The actor closed: the message back (boxed: a rare path), and the entry's generation.
    Closed(Box<M>, u64),
}

/// A message for an app's actor: it names its app.
pub trait ForApp: Message<Result = ()> + Send + 'static {
    fn app_id(&self) -> &Arc<str>;
}

impl ForApp for Fetch {
    fn app_id(&self) -> &Arc<str> {
        self.query.app_id()
    }
}

impl ForApp for Admit {
    fn app_id(&self) -> &Arc<str> {
        &self.app_id
    }
}

/// A live actor: its address, what it has been doing, and its app's policy.
struct Entry {
    generation: u64,
    addr: Addr<AppActor>,
    activity: Arc<Activity>,
    policy: Arc<AppPolicy>,
    /// When the sweep last found the actor touched, in ms since the registry's `epoch`.
    quiet_since_ms: AtomicU64,
}

impl Entry {
    /// Whether the actor has handled nothing for `idle` (as of `now_ms`), has nothing
    /// queued, and its app has no query under way; a touch since the last sweep restarts
    /// its quiet time.
    fn idle(&self, now_ms: u64, idle: Duration) -> bool {
        if self.activity.touched.swap(false, Ordering::AcqRel) {
            self.quiet_since_ms.store(now_ms, Ordering::Relaxed);
            return false;
        }
        let quiet = now_ms.saturating_sub(self.quiet_since_ms.load(Ordering::Relaxed));
        quiet >= idle.as_millis() as u64
            && self.activity.queued.load(Ordering::Acquire) == 0
            && !self.policy.busy()
    }
}

/// An app's shared policy and how many of its actors live.
struct App {
    policy: Arc<AppPolicy>,
    actors: usize,
}

/// The maps' hasher: foldhash, seeded per map, instead of SipHash; every request hashes
/// its app id here.
type Hasher = foldhash::fast::RandomState;

/// The registry's maps. Only the registry's own code edits them: directly, or through the
/// `OnStop` callback it hands each actor it starts.
#[derive(Default)]
struct Maps {
    /// The live actors, sharded so lookups of different apps do not contend.
    actors: DashMap<(usize, Arc<str>), Entry, Hasher>,
    apps: DashMap<Arc<str>, App, Hasher>,
}

impl Maps {
    /// An actor stopped: forget it, and its app's policy when it was the app's last actor.
    fn forget(&self, key: &(usize, Arc<str>), generation: u64) {
        self.actors
            .remove_if(key, |_, e| e.generation == generation);
        if let Some(mut app) = self.apps.get_mut(&key.1) {
            app.actors -= 1;
        }
        self.apps.remove_if(&key.1, |_, app| app.actors == 0);
    }
}

pub struct Registry {
    core: SharedCore,
    maps: Arc<Maps>,
    /// Dedicated arbiter threads (`actors.arbiters` > 0), stopped with the registry.
    arbiters: Vec<Arbiter>,
    /// Where actors are started: the dedicated arbiters, or the HTTP workers' arbiters.
    hosts: RwLock<Vec<ArbiterHandle>>,
    next_arbiter: AtomicUsize,
    generation: AtomicU64,
    mailbox_capacity: usize,
    /// The clock of the entries' quiet times.
    epoch: Instant,
    /// The task that stops idle actors, aborted with the registry.
    sweeper: Option<tokio::task::JoinHandle<()>>,
    metrics: ActorMetrics,
}

impl Registry {
    /// With `actors.arbiters` > 0, starts that many dedicated arbiter threads (needs a
    /// running actix System); with 0, actors live on the threads that call
    /// `host_current_thread` (the HTTP workers). Either way it must be called on an actix
    /// arbiter: the sweep of idle actors runs there.
    pub fn new(core: SharedCore) -> Self {
        let arbiters: Vec<Arbiter> = (0..core.settings.actors.arbiters)
            .map(|_| Arbiter::new())
            .collect();
        let maps = Arc::<Maps>::default();
        let epoch = Instant::now();
        let idle = Duration::from_secs(core.settings.actors.idle_timeout_seconds);
        Self {
            hosts: RwLock::new(arbiters.iter().map(Arbiter::handle).collect()),
            arbiters,
            sweeper: Some(actix::spawn(sweep(Arc::downgrade(&maps), epoch, idle))),
            maps,
            next_arbiter: AtomicUsize::new(0),
            generation: AtomicU64::new(0),
            mailbox_capacity: core.settings.actors.mailbox_capacity,
            epoch,
            metrics: ActorMetrics::register(core.metrics.registry()),
            core,
        }
    }

    /// Makes the calling thread (an HTTP worker) a host of its own actors, when no
    /// dedicated arbiters are configured.
    pub fn host_current_thread(&self) {
        if self.arbiters.is_empty() {
            let mut hosts = self.hosts.write().unwrap_or_else(|e| e.into_inner());
            HOST.set(Some(hosts.len()));
            hosts.push(Arbiter::current());
        }
    }

    /// Hands `msg` to its app's actor without waiting. The mailbox holds at most
    /// `actors.mailbox_capacity` messages; past that the request is 503 overloaded.
    pub fn send<M: ForApp>(&self, msg: M) -> Result<(), SendFailure>
    where
        AppActor: Handler<M>,
    {
        let host = match self.arbiters.is_empty() {
            true => HOST.get().unwrap_or(ANY_HOST),
            false => ANY_HOST,
        };
        let key = (host, msg.app_id().clone());
        let mut msg = msg;
        // A second try covers an actor that stopped between lookup and send.
        for _ in 0..2 {
            // Sent under the map's guard (no clone of the entry); the guard is gone before
            // a closed actor's entry is removed below.
            let sent = match self.maps.actors.get(&key) {
                Some(entry) => self.try_send(&entry, msg),
                None => {
                    let entry = self
                        .maps
                        .actors
                        .entry(key.clone())
                        .or_insert_with(|| self.start(key.clone()));
                    self.try_send(&entry, msg)
                }
            };
            match sent {
                Sent::Queued => return Ok(()),
                Sent::Full => return Err(SendFailure::MailboxFull),
                Sent::Closed(back, generation) => {
                    self.maps
                        .actors
                        .remove_if(&key, |_, e| e.generation == generation);
                    msg = *back;
                }
            }
        }
        Err(SendFailure::Closed)
    }

    /// Queues `msg` for `entry`'s actor, within the mailbox bound.
    fn try_send<M: ForApp>(&self, entry: &Entry, msg: M) -> Sent<M>
    where
        AppActor: Handler<M>,
    {
        let queued = &entry.activity.queued;
        if queued.fetch_add(1, Ordering::AcqRel) >= self.mailbox_capacity {
            queued.fetch_sub(1, Ordering::AcqRel);
            return Sent::Full;
        }
        // The count above is the bound; actix's own queue is unbounded and never parks.
        match entry.addr.try_send(msg) {
            Ok(()) => Sent::Queued,
            Err(SendError::Full(back) | SendError::Closed(back)) => {
                queued.fetch_sub(1, Ordering::AcqRel);
                Sent::Closed(Box::new(back), entry.generation)
            }
        }
    }

    /// The app's quota as it stands, without counting a request.
    pub fn rate_info(&self, app_id: &str) -> RateInfo {
        match self.maps.apps.get(app_id) {
            Some(app) => app.policy.peek(),
            // No actor of the app lives: its quota is whole.
            None => {
                let (_, burst) = self.core.live.load().rate_limit.for_app(app_id);
                RateInfo {
                    limit: burst,
                    remaining: burst,
                    reset_seconds: 0,
                }
            }
        }
    }

    fn start(&self, key: (usize, Arc<str>)) -> Entry {
        let generation = self.generation.fetch_add(1, Ordering::Relaxed);
        let host = {
            let hosts = self.hosts.read().unwrap_or_else(|e| e.into_inner());
            match (key.0, hosts.len()) {
                (ANY_HOST, 0) => Arbiter::current(), // outside a server: the caller's own
                (ANY_HOST, n) => {
                    hosts[self.next_arbiter.fetch_add(1, Ordering::Relaxed) % n].clone()
                }
                (index, _) => hosts[index].clone(),
            }
        };
        let policy = {
            let mut app = self.maps.apps.entry(key.1.clone()).or_insert_with(|| App {
                policy: Arc::new(self.new_policy(&key.1)),
                actors: 0,
            });
            app.actors += 1;
            app.policy.clone()
        };
        let maps = self.maps.clone();
        let on_stop = Box::new(move || maps.forget(&key, generation));
        let core = self.core.clone();
        let activity = Arc::new(Activity::default());
        let (shared, app_policy) = (activity.clone(), policy.clone());
        let alive = self.metrics.app_actors.clone();
        // Capacity 0: actix never parks the sender; `queued` is the mailbox bound.
        let (tx, rx) = channel::channel(0);
        host.spawn_fn(move || {
            let ctx = Context::with_receiver(rx);
            actix::spawn(ctx.into_future(AppActor::new(on_stop, core, shared, app_policy, alive)));
        });
        Entry {
            generation,
            addr: Addr::new(tx),
            activity,
            policy,
            quiet_since_ms: AtomicU64::new(self.epoch.elapsed().as_millis() as u64),
        }
    }
}

impl Registry {
    fn new_policy(&self, app_id: &str) -> AppPolicy {
        let (rps, burst) = self.core.live.load().rate_limit.for_app(app_id);
        let redis = &self.core.settings.redis;
        AppPolicy::with_share(
            rps,
            burst,
            // Without Redis the process is the fleet; with it, its share applies only while
            // Redis fails.
            if redis.enabled() {
                redis.fallback_fleet_size
            } else {
                1
            },
            self.metrics.rate_limited.clone(),
        )
    }

    /// Applies reloaded rate limits to the live apps; an app whose quota did not change
    /// keeps its limiter state. Returns how many apps changed.
    pub fn requota(&self, rate_limit: &crate::config::RateLimitSettings) -> usize {
        self.maps
            .apps
            .iter()
            .filter(|app| {
                let (rps, burst) = rate_limit.for_app(app.key());
                app.policy.set_quota(rps, burst)
            })
            .count()
    }
}

/// Every `idle / 4` (50 ms to 30 s), drops the entries of actors idle for `idle`: with its
/// last address gone and nothing queued, an actor stops, and its `OnStop` forgets it. One
/// task for all actors, so an actor has no timer of its own to poll on every message.
async fn sweep(maps: Weak<Maps>, epoch: Instant, idle: Duration) {
    let every = (idle / 4).clamp(Duration::from_millis(50), Duration::from_secs(30));
    let mut ticks = tokio::time::interval(every);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        let Some(maps) = maps.upgrade() else { return };
        let now_ms = epoch.elapsed().as_millis() as u64;
        maps.actors.retain(|_, entry| !entry.idle(now_ms, idle));
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        if let Some(sweeper) = self.sweeper.take() {
            sweeper.abort();
        }
        for arbiter in &self.arbiters {
            arbiter.stop();
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use tokio::sync::oneshot;

    use super::*;
    use crate::config::Settings;
    use crate::domain::{LogQuery, RawQuery};
    use crate::metrics::Metrics;
    use crate::state::Core;

    fn fetch(app_id: &str) -> (Fetch, oneshot::Receiver<crate::actors::Reply>) {
        let (reply, answer) = oneshot::channel();
        let query = LogQuery::new(app_id.into(), RawQuery::default(), &[], 0).unwrap();
        let request_id = "t".into();
        (
            Fetch {
                query,
                tenant: None,
                request_id,
                span: tracing::Span::none(),
                coding: None,
                reply,
            },
            answer,
        )
    }

    #[actix_web::test]
    async fn a_full_mailbox_is_answered_overloaded_and_queued_requests_are_still_served() {
        let mut settings = Settings::default();
        settings.actors.arbiters = 1;
        settings.actors.mailbox_capacity = 3;
        // Nothing listens there: a miss fails fast, which is all this test needs.
        settings.clickhouse.url = "http://127.0.0.1:9".into();
        let registry = Registry::new(Arc::new(Core::new(settings, Metrics::new()).unwrap()));
        // The arbiter that will host the actor is busy, so its mailbox fills up.
        registry.arbiters[0].spawn_fn(|| std::thread::sleep(Duration::from_millis(300)));

        let mut answers = Vec::new();
        for _ in 0..3 {
            let (msg, answer) = fetch("busy-app");
            registry.send(msg).expect("room in the mailbox");
            answers.push(answer);
        }
        let (msg, _) = fetch("busy-app");
        assert!(matches!(registry.send(msg), Err(SendFailure::MailboxFull)));

        for answer in answers {
            answer.await.expect("every queued request gets a reply");
        }
        let (msg, answer) = fetch("busy-app");
        registry.send(msg).expect("the mailbox drained");
        answer.await.unwrap();
    }
}
