//! Live tail (CONTRACT.md §15): `GET /v1/apps/{app_id}/logs/tail` follows an app's new
//! entries as Server-Sent Events. `Tails` opens streams within the process's and each
//! tenant's bounds and hands each to the poller of its listing (`hub::TailHub`, one per app,
//! `log_type` and `level` in the process); a stream is its response body (`stream::Body`),
//! which its poller fills through a bounded outbox.

mod event;
mod hub;
mod metrics;
mod sent;
mod shared;
mod stream;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use actix::{Actor as _, Addr};

pub use event::{EndReason, EventId};
pub use metrics::TailMetrics;
pub use stream::Body;

use hub::{Forget, Join, Leave, Member, Start, TailHub};
use shared::Shared;
use stream::Outbox;

use crate::domain::{LogQuery, QueryKey};
use crate::state::SharedCore;

/// Why a stream was not opened.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TailRefusal {
    /// The tenant has `tail.max_streams_per_tenant` streams open.
    #[error("the tenant has {limit} tail streams open")]
    TooManyStreams { limit: usize },
    /// The process has `tail.max_streams` streams open.
    #[error("the process has {limit} tail streams open")]
    Overloaded { limit: usize },
}

/// A poller in the registry: which one, its address, and the streams that follow it (or
/// are about to: counted before their `Join` is sent, so an idle poller never stops with a
/// `Join` on its way).
struct Entry {
    generation: u64,
    addr: Addr<TailHub>,
    followers: Arc<AtomicUsize>,
}

#[derive(Default)]
struct Open {
    total: usize,
    per_tenant: HashMap<Arc<str>, usize>,
    /// Every open stream's outbox, to end them all at shutdown.
    outboxes: HashMap<u64, Arc<Outbox>>,
}

/// The pollers and the open streams. `Tails` owns it; a poller leaves it through the
/// `Forget` it was started with, never by reaching into its map.
#[derive(Default)]
struct Registry {
    hubs: Mutex<HashMap<QueryKey, Entry>>,
    open: Mutex<Open>,
    next_id: AtomicU64,
    closed: AtomicBool,
}

impl Registry {
    fn hubs(&self) -> std::sync::MutexGuard<'_, HashMap<QueryKey, Entry>> {
        self.hubs.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn open(&self) -> std::sync::MutexGuard<'_, Open> {
        self.open.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Forgets the poller of `key` if it is `generation` and no stream follows it (or is
    /// about to); whether it was forgotten (and may stop).
    fn forget(&self, key: &QueryKey, generation: u64) -> bool {
        let mut hubs = self.hubs();
        let idle = hubs.get(key).is_some_and(|e| {
            e.generation == generation && e.followers.load(Ordering::Acquire) == 0
        });
        if idle {
            hubs.remove(key);
        }
        idle
    }
}

/// The process's live tail streams and their pollers.
pub struct Tails {
    shared: Arc<Shared>,
    registry: Arc<Registry>,
}

impl Tails {
    pub fn new(core: SharedCore) -> Self {
        let metrics = TailMetrics::register(core.metrics.registry());
        Self {
            shared: Arc::new(Shared {
                settings: core.settings.tail.clone(),
                queue_timeout: Duration::from_millis(core.settings.clickhouse.queue_timeout_ms),
                core,
                metrics,
            }),
            registry: Arc::default(),
        }
    }

    /// Opens a stream of `key`'s new entries for a caller of `tenant` (key digest `digest`),
    /// from now or right after `resume`. Must be called on an actix arbiter (a new poller
    /// starts there).
    pub fn open(
        &self,
        key: QueryKey,
        tenant: Option<Arc<str>>,
        digest: Option<[u8; 32]>,
        resume: Option<EventId>,
    ) -> Result<Body, TailRefusal> {
        let (shared, registry) = (&self.shared, &self.registry);
        let settings = &shared.settings;
        let outbox = Outbox::new(settings.max_lag_events);
        let id = registry.next_id.fetch_add(1, Ordering::Relaxed);
        let body = Body::new(
            outbox.clone(),
            Duration::from_secs(settings.heartbeat_seconds),
            Duration::from_secs(settings.max_stream_seconds),
        );
        if registry.closed.load(Ordering::Acquire) {
            // Shutting down: a stream that ends at once.
            outbox.end(EndReason::Shutdown);
            return Ok(body);
        }
        {
            let mut open = registry.open();
            let tenant_open = tenant
                .as_ref()
                .map_or(0, |t| open.per_tenant.get(t).map_or(0, |n| *n));
            if tenant.is_some() && tenant_open >= settings.max_streams_per_tenant {
                return Err(TailRefusal::TooManyStreams {
                    limit: settings.max_streams_per_tenant,
                });
            }
            if open.total >= settings.max_streams {
                return Err(TailRefusal::Overloaded {
                    limit: settings.max_streams,
                });
            }
            open.total += 1;
            if let Some(t) = &tenant {
                *open.per_tenant.entry(t.clone()).or_default() += 1;
            }
            open.outboxes.insert(id, outbox.clone());
        }
        shared.metrics.streams.inc();
        let start = match resume {
            Some(event) => Start::After(event),
            None => Start::Now {
                opened_ms: chrono::Utc::now().timestamp_millis(),
            },
        };
        let member = Member {
            outbox: outbox.clone(),
            digest,
            tenant: tenant.clone(),
        };
        let (addr, followers) = self.hub_of(key);
        let hub = addr.clone();
        let weak = (Arc::downgrade(shared), Arc::downgrade(registry));
        outbox.on_close(Box::new(move |reason| {
            followers.fetch_sub(1, Ordering::AcqRel);
            addr.do_send(Leave { id });
            let (Some(shared), Some(registry)) = (weak.0.upgrade(), weak.1.upgrade()) else {
                return;
            };
            shared.metrics.streams.dec();
            shared.metrics.count_end(reason);
            let mut open = registry.open();
            open.total -= 1;
            open.outboxes.remove(&id);
            if let Some(t) = &tenant {
                if let Some(n) = open.per_tenant.get_mut(t) {
                    *n -= 1;
                    if *n == 0 {
                        open.per_tenant.remove(t);
                    }
                }
            }
        }));
        hub.do_send(Join { id, member, start });
        Ok(body)
    }

    /// The poller of `key` (started here if there is none), counting one more follower.
    fn hub_of(&self, key: QueryKey) -> (Addr<TailHub>, Arc<AtomicUsize>) {
        let mut hubs = self.registry.hubs();
        if !hubs.get(&key).is_some_and(|e| e.addr.connected()) {
            let generation = self.registry.next_id.fetch_add(1, Ordering::Relaxed);
            let query = LogQuery {
                key: key.clone(),
                limit: 0,
            };
            let forget: Forget = {
                let (registry, key) = (Arc::downgrade(&self.registry), key.clone());
                Box::new(move || {
                    registry
                        .upgrade()
                        .is_some_and(|r| r.forget(&key, generation))
                })
            };
            let addr = TailHub::new(&self.shared, query, forget).start();
            let entry = Entry {
                generation,
                addr,
                followers: Arc::default(),
            };
            hubs.insert(key.clone(), entry);
        }
        let entry = &hubs[&key];
        entry.followers.fetch_add(1, Ordering::AcqRel);
        (entry.addr.clone(), entry.followers.clone())
    }

    /// SIGTERM/SIGINT: every stream ends now (`event: end`, `shutdown`), and no new one opens.
    pub fn shutdown(&self) {
        let registry = &self.registry;
        registry.closed.store(true, Ordering::Release);
        let outboxes: Vec<_> = registry.open().outboxes.values().cloned().collect();
        for outbox in outboxes {
            outbox.end(EndReason::Shutdown);
        }
    }

    /// Streams open now.
    pub fn open_streams(&self) -> usize {
        self.registry.open().total
    }
}
