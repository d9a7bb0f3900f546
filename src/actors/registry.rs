//! `Registry`: app_id -> the app's actor. Starts actors on first use, spreads them over a
//! pool of arbiters, and forgets them when they stop.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;

use actix::dev::SendError;
use actix::{Actor, Addr, Arbiter};
use dashmap::DashMap;

use super::app::{AppActor, Fetch};
use crate::api::error::ApiError;
use crate::state::SharedCore;

#[derive(Clone)]
pub(super) struct Entry {
    pub(super) generation: u64,
    addr: Addr<AppActor>,
}

/// The live actors, sharded so lookups of different apps do not contend.
pub(super) type ActorMap = Arc<DashMap<Arc<str>, Entry>>;

pub struct Registry {
    core: SharedCore,
    actors: ActorMap,
    arbiters: Vec<Arbiter>,
    next_arbiter: AtomicUsize,
    generation: AtomicU64,
}

impl Registry {
    /// Starts the arbiter pool (`actors.arbiters`, 0 = one per core). Needs a running
    /// actix System.
    pub fn new(core: SharedCore) -> Self {
        let count = match core.settings.actors.arbiters {
            0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
            n => n,
        };
        Self {
            arbiters: (0..count).map(|_| Arbiter::new()).collect(),
            actors: Arc::new(DashMap::new()),
            next_arbiter: AtomicUsize::new(0),
            generation: AtomicU64::new(0),
            core,
        }
    }

    /// Hands `msg` to its app's actor without waiting: a full mailbox is 503 overloaded.
    pub fn send(&self, msg: Fetch) -> Result<(), ApiError> {
        let app_id = msg.query.app_id.clone();
        let mut msg = msg;
        // A second try covers an actor that stopped between lookup and send.
        for _ in 0..2 {
            let entry = self.actor(&app_id);
            match entry.addr.try_send(msg) {
                Ok(()) => return Ok(()),
                Err(SendError::Full(_)) => return Err(ApiError::Overloaded { retry_after: 1 }),
                Err(SendError::Closed(back)) => {
                    let generation = entry.generation;
                    self.actors
                        .remove_if(&app_id, |_, e| e.generation == generation);
                    msg = back;
                }
            }
        }
        Err(ApiError::Internal("app actor closed twice in a row".into()))
    }

    /// Live actors known to the registry.
    pub fn len(&self) -> usize {
        self.actors.len()
    }

    pub fn is_empty(&self) -> bool {
        self.actors.is_empty()
    }

    fn actor(&self, app_id: &Arc<str>) -> Entry {
        if let Some(entry) = self.actors.get(app_id) {
            return entry.clone();
        }
        self.actors
            .entry(app_id.clone())
            .or_insert_with(|| self.start(app_id.clone()))
            .clone()
    }

    fn start(&self, app_id: Arc<str>) -> Entry {
        let generation = self.generation.fetch_add(1, Ordering::Relaxed);
        let index = self.next_arbiter.fetch_add(1, Ordering::Relaxed) % self.arbiters.len();
        let (core, actors) = (self.core.clone(), self.actors.clone());
        let capacity = core.settings.actors.mailbox_capacity;
        let addr = AppActor::start_in_arbiter(&self.arbiters[index].handle(), move |ctx| {
            ctx.set_mailbox_capacity(capacity);
            AppActor::new(app_id, generation, core, actors)
        });
        Entry { generation, addr }
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        for arbiter in &self.arbiters {
            arbiter.stop();
        }
    }
}
