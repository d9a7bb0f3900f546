//! `Registry`: app_id -> the app's actor. Starts actors on first use, spreads them over
//! arbiters, and forgets them when they stop.
//!
//! With `actors.arbiters = 0` (the default) the HTTP workers' own arbiters host the actors,
//! and each worker gets its own actor for an app, so a request never crosses threads to
//! reach it; the app's actors share one `AppPolicy` (rate limit, query slots). With
//! `actors.arbiters = N` a dedicated pool of N arbiters hosts one actor per app.

use std::cell::Cell;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};

use actix::dev::{channel, SendError};
use actix::{Addr, Arbiter, ArbiterHandle, Context};
use dashmap::DashMap;

use super::app::{AppActor, AppPolicy, Fetch, RateInfo};
use crate::api::error::ApiError;
use crate::state::SharedCore;

thread_local! {
    /// The index of this thread in its registry's hosts, on HTTP worker threads.
    static HOST: Cell<Option<usize>> = const { Cell::new(None) };
}

/// The key of an actor that serves every thread (dedicated arbiters, or no host here).
const ANY_HOST: usize = usize::MAX;

/// A live actor: its address and the count of messages sent but not yet handled.
pub(super) struct Entry {
    generation: u64,
    addr: Addr<AppActor>,
    queued: Arc<AtomicUsize>,
}

type ActorMap = DashMap<(usize, Arc<str>), Arc<Entry>>;
type PolicyMap = DashMap<Arc<str>, Arc<AppPolicy>>;

/// Where an actor lives, so it can take itself out of the registry when it stops.
pub(super) struct Home {
    key: (usize, Arc<str>),
    generation: u64,
    actors: Arc<ActorMap>,
    policies: Arc<PolicyMap>,
}

impl Home {
    /// Forgets this actor, and the app's policy once no other actor of the app holds it.
    pub(super) fn forget(&self, policy: &Arc<AppPolicy>) {
        let generation = self.generation;
        self.actors
            .remove_if(&self.key, |_, e| e.generation == generation);
        // Held by the map and by the stopping actor only: no other actor of the app lives.
        self.policies.remove_if(&self.key.1, |_, p| {
            Arc::ptr_eq(p, policy) && Arc::strong_count(p) <= 2
        });
    }
}

pub struct Registry {
    core: SharedCore,
    /// The live actors, sharded so lookups of different apps do not contend.
    actors: Arc<ActorMap>,
    policies: Arc<PolicyMap>,
    /// Dedicated arbiter threads (`actors.arbiters` > 0), stopped with the registry.
    arbiters: Vec<Arbiter>,
    /// Where actors are started: the dedicated arbiters, or the HTTP workers' arbiters.
    hosts: RwLock<Vec<ArbiterHandle>>,
    next_arbiter: AtomicUsize,
    generation: AtomicU64,
    mailbox_capacity: usize,
}

impl Registry {
    /// With `actors.arbiters` > 0, starts that many dedicated arbiter threads (needs a
    /// running actix System); with 0, actors live on the threads that call
    /// `host_current_thread` (the HTTP workers).
    pub fn new(core: SharedCore) -> Self {
        let arbiters: Vec<Arbiter> = (0..core.settings.actors.arbiters)
            .map(|_| Arbiter::new())
            .collect();
        Self {
            hosts: RwLock::new(arbiters.iter().map(Arbiter::handle).collect()),
            arbiters,
            actors: Arc::new(DashMap::new()),
            policies: Arc::new(DashMap::new()),
            next_arbiter: AtomicUsize::new(0),
            generation: AtomicU64::new(0),
            mailbox_capacity: core.settings.actors.mailbox_capacity,
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
    pub fn send(&self, msg: Fetch) -> Result<(), ApiError> {
        let host = match self.arbiters.is_empty() {
            true => HOST.get().unwrap_or(ANY_HOST),
            false => ANY_HOST,
        };
        let key = (host, msg.query.app_id.clone());
        let mut msg = msg;
        // A second try covers an actor that stopped between lookup and send.
        for _ in 0..2 {
            let entry = self.actor(&key);
            if entry.queued.fetch_add(1, Ordering::AcqRel) >= self.mailbox_capacity {
                entry.queued.fetch_sub(1, Ordering::AcqRel);
                return Err(ApiError::Overloaded { retry_after: 1 });
            }
            // The count above is the bound; actix's own queue is unbounded and never parks.
            match entry.addr.try_send(msg) {
                Ok(()) => return Ok(()),
                Err(SendError::Full(back) | SendError::Closed(back)) => {
                    entry.queued.fetch_sub(1, Ordering::AcqRel);
                    let generation = entry.generation;
                    self.actors
                        .remove_if(&key, |_, e| e.generation == generation);
                    msg = back;
                }
            }
        }
        Err(ApiError::Internal("app actor closed twice in a row".into()))
    }

    /// The app's quota as it stands, without counting a request.
    pub fn rate_info(&self, app_id: &str) -> RateInfo {
        match self.policies.get(app_id) {
            Some(policy) => policy.peek(),
            // No actor of the app lives: its quota is whole.
            None => {
                let (_, burst) = self.core.settings.rate_limit.for_app(app_id);
                RateInfo {
                    limit: burst,
                    remaining: burst,
                    reset_seconds: 0,
                }
            }
        }
    }

    fn actor(&self, key: &(usize, Arc<str>)) -> Arc<Entry> {
        if let Some(entry) = self.actors.get(key) {
            return entry.clone();
        }
        self.actors
            .entry(key.clone())
            .or_insert_with(|| self.start(key.clone()))
            .clone()
    }

    fn start(&self, key: (usize, Arc<str>)) -> Arc<Entry> {
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
        let policy = self
            .policies
            .entry(key.1.clone())
            .or_insert_with(|| Arc::new(AppPolicy::new(&key.1, &self.core.settings)))
            .clone();
        let home = Home {
            key,
            generation,
            actors: self.actors.clone(),
            policies: self.policies.clone(),
        };
        let core = self.core.clone();
        let queued = Arc::new(AtomicUsize::new(0));
        let counter = queued.clone();
        // Capacity 0: actix never parks the sender; `queued` is the mailbox bound.
        let (tx, rx) = channel::channel(0);
        host.spawn_fn(move || {
            let ctx = Context::with_receiver(rx);
            actix::spawn(ctx.into_future(AppActor::new(home, core, counter, policy)));
        });
        Arc::new(Entry {
            generation,
            addr: Addr::new(tx),
            queued,
        })
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
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
    use crate::api::params::LogQuery;
    use crate::config::Settings;
    use crate::metrics::Metrics;
    use crate::state::Core;

    fn fetch(app_id: &str) -> (Fetch, oneshot::Receiver<crate::actors::Reply>) {
        let (reply, answer) = oneshot::channel();
        let query = LogQuery::parse(app_id.into(), "", &["info".into()]).unwrap();
        let request_id = "t".into();
        (
            Fetch {
                query,
                request_id,
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
        let registry = Registry::new(Arc::new(Core::new(settings, Metrics::new())));
        // The arbiter that will host the actor is busy, so its mailbox fills up.
        registry.arbiters[0].spawn_fn(|| std::thread::sleep(Duration::from_millis(300)));

        let mut answers = Vec::new();
        for _ in 0..3 {
            let (msg, answer) = fetch("busy-app");
            registry.send(msg).expect("room in the mailbox");
            answers.push(answer);
        }
        let (msg, _) = fetch("busy-app");
        assert!(matches!(
            registry.send(msg),
            Err(ApiError::Overloaded { .. })
        ));

        for answer in answers {
            answer.await.expect("every queued request gets a reply");
        }
        let (msg, answer) = fetch("busy-app");
        registry.send(msg).expect("the mailbox drained");
        answer.await.unwrap();
    }
}
