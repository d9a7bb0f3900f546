//! `Registry`: app_id -> the app's actor. Starts actors on first use, spreads them over
//! arbiters (the HTTP workers' own, or a dedicated pool), and forgets them when they stop.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};

use actix::dev::{channel, SendError};
use actix::{Addr, Arbiter, ArbiterHandle, Context};
use dashmap::DashMap;

use super::app::{AppActor, Fetch};
use crate::api::error::ApiError;
use crate::state::SharedCore;

/// A live actor: its address and the count of messages sent but not yet handled.
pub(super) struct Entry {
    pub(super) generation: u64,
    addr: Addr<AppActor>,
    pub(super) queued: Arc<AtomicUsize>,
}

/// The live actors, sharded so lookups of different apps do not contend.
pub(super) type ActorMap = Arc<DashMap<Arc<str>, Arc<Entry>>>;

pub struct Registry {
    core: SharedCore,
    actors: ActorMap,
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
    /// `host_current_thread` (the HTTP workers), so a request often reaches its app's actor
    /// without crossing threads.
    pub fn new(core: SharedCore) -> Self {
        let arbiters: Vec<Arbiter> = (0..core.settings.actors.arbiters)
            .map(|_| Arbiter::new())
            .collect();
        Self {
            hosts: RwLock::new(arbiters.iter().map(Arbiter::handle).collect()),
            arbiters,
            actors: Arc::new(DashMap::new()),
            next_arbiter: AtomicUsize::new(0),
            generation: AtomicU64::new(0),
            mailbox_capacity: core.settings.actors.mailbox_capacity,
            core,
        }
    }

    /// Hands `msg` to its app's actor without waiting. The mailbox holds at most
    /// `actors.mailbox_capacity` messages; past that the request is 503 overloaded.
    pub fn send(&self, msg: Fetch) -> Result<(), ApiError> {
        let app_id = msg.query.app_id.clone();
        let mut msg = msg;
        // A second try covers an actor that stopped between lookup and send.
        for _ in 0..2 {
            let entry = self.actor(&app_id);
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
                        .remove_if(&app_id, |_, e| e.generation == generation);
                    msg = back;
                }
            }
        }
        Err(ApiError::Internal("app actor closed twice in a row".into()))
    }

    /// Offers the calling thread's arbiter (an HTTP worker's) as a home for actors, when
    /// no dedicated arbiters are configured.
    pub fn host_current_thread(&self) {
        if self.arbiters.is_empty() {
            self.hosts
                .write()
                .unwrap_or_else(|e| e.into_inner())
                .push(Arbiter::current());
        }
    }

    /// Live actors known to the registry.
    pub fn len(&self) -> usize {
        self.actors.len()
    }

    pub fn is_empty(&self) -> bool {
        self.actors.is_empty()
    }

    fn actor(&self, app_id: &Arc<str>) -> Arc<Entry> {
        if let Some(entry) = self.actors.get(app_id) {
            return entry.clone();
        }
        self.actors
            .entry(app_id.clone())
            .or_insert_with(|| self.start(app_id.clone()))
            .clone()
    }

    fn start(&self, app_id: Arc<str>) -> Arc<Entry> {
        let generation = self.generation.fetch_add(1, Ordering::Relaxed);
        let hosts = self.hosts.read().unwrap_or_else(|e| e.into_inner());
        let host = match hosts.len() {
            // Only outside a server (tools, tests): the caller's own arbiter.
            0 => Arbiter::current(),
            n => hosts[self.next_arbiter.fetch_add(1, Ordering::Relaxed) % n].clone(),
        };
        let (core, actors) = (self.core.clone(), self.actors.clone());
        let queued = Arc::new(AtomicUsize::new(0));
        let counter = queued.clone();
        // Capacity 0: actix never parks the sender; `queued` is the mailbox bound.
        let (tx, rx) = channel::channel(0);
        host.spawn_fn(move || {
            let ctx = Context::with_receiver(rx);
            let actor = AppActor::new(app_id, generation, core, actors, counter);
            actix::spawn(ctx.into_future(actor));
        });
        let addr = Addr::new(tx);
        Arc::new(Entry {
            generation,
            addr,
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
