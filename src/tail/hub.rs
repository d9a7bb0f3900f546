//! `TailHub`: the actor that follows one listing (app, `log_type`, `level`) for every stream
//! of this process that follows it. It polls ClickHouse once per `tail.poll_interval_ms`
//! while a stream follows it, through the app's shard and a query slot of its tenant, and
//! fans each poll's new entries out to its streams as one shared frame. Streams join and
//! leave by message (actix's chat example: a hub that owns its sessions).
//!
//! What it sent stays for `tail.resume_seconds` after its last stream left (it polls no
//! more meanwhile), so a reconnect with `Last-Event-ID` gets exactly what it missed: the
//! events after that id, from memory, then the entries that arrived meanwhile. An id of
//! another poller (another process, or one that stopped) resumes after the id's position.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use actix::{
    Actor, ActorContext as _, ActorFutureExt as _, AsyncContext as _, Context, Handler, Message,
};
use actix::{ContextFutureSpawner as _, WrapFuture as _};
use bytes::{Bytes, BytesMut};

use super::event::{gap_frame, Batch, EndReason, EventId};
use super::sent::{self, Delivery, Sent};
use super::shared::Shared;
use super::stream::{Outbox, Refused};
use crate::clickhouse::{Bounds, QueryError};
use crate::domain::{LogQuery, Position};
use crate::slots::Claimant;
use crate::state::Live;

/// A stream as its poller knows it.
pub struct Member {
    pub outbox: Arc<Outbox>,
    /// SHA-256 of its API key (`None` with auth off), checked again after each reload.
    pub digest: Option<[u8; 32]>,
    pub tenant: Option<Arc<str>>,
}

/// Where a joining stream starts.
pub enum Start {
    /// At the moment it opened (ms since the epoch).
    Now { opened_ms: i64 },
    /// Right after an event it received (`Last-Event-ID`).
    After(EventId),
}

pub struct Join {
    pub id: u64,
    pub member: Member,
    pub start: Start,
}

impl Message for Join {
    type Result = ();
}

/// A stream's body was dropped.
pub struct Leave {
    pub id: u64,
}

impl Message for Leave {
    type Result = ();
}

/// A stream that receives its own first event from the next poll: everything after its
/// position, then the hub's events.
struct Joiner {
    id: u64,
    member: Member,
    after: Position,
}

/// An event the hub sent, kept for resumes.
struct Sent1 {
    seq: u64,
    frame: Bytes,
    entries: usize,
}

/// How a poller leaves the registry: it is forgotten if no stream follows it (or is about
/// to); whether it was (and may stop).
pub type Forget = Box<dyn Fn() -> bool>;

pub struct TailHub {
    shared: Weak<Shared>,
    /// Leaves the registry (which knows this poller's entry).
    forget: Forget,
    query: LogQuery,
    binding: u64,
    incarnation: u64,
    seq: u64,
    sent: Sent,
    /// Whether the first poll is done (what it found was there before any stream).
    primed: bool,
    members: HashMap<u64, Member>,
    /// Waiting for the next poll; `joining`: in the poll under way.
    joiners: Vec<Joiner>,
    joining: Vec<Joiner>,
    ring: VecDeque<Sent1>,
    ring_entries: usize,
    polling: bool,
    polls: u64,
    /// The configuration the members were last checked against.
    live: Arc<Live>,
    idle_since: Option<Instant>,
}

impl TailHub {
    pub fn new(shared: &Arc<Shared>, query: LogQuery, forget: Forget) -> Self {
        let now_ms = chrono::Utc::now().timestamp_millis();
        let overlap = shared.settings.overlap_ms as i64;
        Self {
            shared: Arc::downgrade(shared),
            forget,
            binding: query.key.binding(),
            query,
            incarnation: rand::random(),
            seq: 0,
            sent: Sent::new(now_ms.saturating_sub(overlap)),
            primed: false,
            members: HashMap::new(),
            joiners: Vec::new(),
            joining: Vec::new(),
            ring: VecDeque::new(),
            ring_entries: 0,
            polling: false,
            polls: 0,
            live: shared.core.live.load_full(),
            idle_since: None,
        }
    }

    /// Whether the events after `seq` are all in memory.
    fn can_replay(&self, seq: u64) -> bool {
        seq == self.seq || (seq < self.seq && self.ring.front().is_some_and(|e| e.seq <= seq + 1))
    }

    fn start_poll(&mut self, ctx: &mut Context<Self>) {
        let Some(shared) = self.shared.upgrade() else {
            return;
        };
        self.polling = true;
        self.joining.append(&mut self.joiners);
        let from_ms = self
            .joining
            .iter()
            .map(|j| j.after.ts)
            .fold(self.sent.watermark_ms(), i64::min);
        let asked = self.sent.rows_to_ask(shared.settings.max_backfill);
        let asked_by = self
            .members
            .values()
            .chain(self.joining.iter().map(|j| &j.member));
        let tenant = asked_by.filter_map(|m| m.tenant.as_ref()).next();
        let owner = self.live.auth.owner(self.query.app_id(), tenant);
        self.polls += 1;
        let query_id = format!(
            "tail.{}.{:x}.{}",
            self.query.app_id(),
            self.incarnation,
            self.polls
        );
        let query = self.query.clone();
        let poll = async move {
            let core = &shared.core;
            let replicas = core.shards.for_app(query.app_id());
            if !replicas.available() {
                return Err(QueryError::Unavailable("no healthy replica".into()));
            }
            let claimant = Claimant {
                tenant: owner,
                app: query.app_id().clone(),
            };
            let deadline = tokio::time::Instant::now() + shared.queue_timeout;
            let _slot = (core.slots.acquire(&claimant, deadline).await)
                .map_err(|_| QueryError::Unavailable("no query slot in time".into()))?;
            shared.metrics.count_poll(query.log_type());
            let started_ms = chrono::Utc::now().timestamp_millis();
            let bounds = Bounds {
                start_ms: from_ms,
                end_ms: None,
                after: None,
            };
            let batch = || (Batch::default(), asked);
            let batch = (core.query_rows(&claimant, &query, bounds, &query_id, batch)).await?;
            Ok((batch, started_ms))
        };
        poll.into_actor(self)
            .map(move |result, hub, _ctx| hub.finish_poll(result, asked))
            .spawn(ctx);
    }

    fn finish_poll(&mut self, result: Result<(Batch, i64), QueryError>, asked: u32) {
        self.polling = false;
        let Some(shared) = self.shared.upgrade() else {
            return;
        };
        let (batch, started_ms) = match result {
            Ok(found) => found,
            Err(error) => {
                tracing::debug!(%error, app_id = %self.query.app_id(), "tail poll failed");
                // The joiners wait for the next poll; nothing moves on.
                let mut joining = std::mem::take(&mut self.joining);
                joining.append(&mut self.joiners);
                self.joiners = joining;
                return;
            }
        };
        let overlap = shared.settings.overlap_ms as i64;
        let new = self
            .sent
            .take(&batch, asked, started_ms, overlap, !self.primed);
        self.primed = true;
        if new.gap.is_some() || !new.rows.is_empty() {
            self.seq += 1;
            let position = self.sent.newest().unwrap_or(Position {
                ts: self.sent.watermark_ms() - 1,
                tie: u64::MAX,
                dup: u32::MAX,
            });
            let frame = self.frame(&batch, &new, position);
            self.remember(frame.clone(), new.rows.len(), shared.settings.max_backfill);
            let mut reached = 0u64;
            self.members
                .retain(|_, m| match m.outbox.push(frame.clone()) {
                    Ok(()) => {
                        reached += 1;
                        true
                    }
                    Err(Refused::Ended | Refused::Lagging) => false,
                });
            shared
                .metrics
                .entries_sent
                .inc_by(reached * new.rows.len() as u64);
        }
        for joiner in std::mem::take(&mut self.joining) {
            let mine = sent::after(&batch, asked, joiner.after);
            if mine.gap.is_some() || !mine.rows.is_empty() {
                let position =
                    sent::newest_of(&batch, &mine.rows, Some(joiner.after)).unwrap_or(joiner.after);
                let frame = self.frame(&batch, &mine, position);
                if joiner.member.outbox.push(frame).is_err() {
                    continue;
                }
                shared.metrics.entries_sent.inc_by(mine.rows.len() as u64);
            }
            self.members.insert(joiner.id, joiner.member);
        }
    }

    /// A gap (if any) then the entries, as one frame whose id is `(incarnation, seq,
    /// position)`.
    fn frame(&self, batch: &Batch, delivery: &Delivery, position: Position) -> Bytes {
        let id = EventId {
            binding: self.binding,
            incarnation: self.incarnation,
            seq: self.seq,
            position,
        };
        let gap = delivery.gap.map(|g| gap_frame(g.start_ms, g.end_ms));
        let key = &self.query.key;
        let entries = (!delivery.rows.is_empty())
            .then(|| batch.frame(&key.app_id, key.log_type, &delivery.rows, &id));
        match (gap, entries) {
            (Some(gap), Some(entries)) => {
                let mut both = BytesMut::with_capacity(gap.len() + entries.len());
                both.extend_from_slice(&gap);
                both.extend_from_slice(&entries);
                both.freeze()
            }
            (Some(one), None) | (None, Some(one)) => one,
            (None, None) => Bytes::new(),
        }
    }

    /// Keeps an event for resumes: the newest ones, `max_backfill` entries at most (and
    /// always the last).
    fn remember(&mut self, frame: Bytes, entries: usize, max_backfill: u32) {
        self.ring.push_back(Sent1 {
            seq: self.seq,
            frame,
            entries,
        });
        self.ring_entries += entries;
        while self.ring.len() > 1 && self.ring_entries > max_backfill as usize {
            let old = self.ring.pop_front().expect("more than one");
            self.ring_entries -= old.entries;
        }
    }

    /// After a reload: ends the streams whose key, tenant or access to the app is gone.
    fn check_access(&mut self, shared: &Shared) {
        let live = shared.core.live.load_full();
        if Arc::ptr_eq(&live, &self.live) {
            return;
        }
        self.live = live;
        let (auth, app_id) = (&self.live.auth, self.query.app_id().clone());
        let allowed = |m: &Member| auth.authorize_digest(m.digest.as_ref(), &app_id).is_ok();
        let revoke = |m: &Member| {
            let keep = allowed(m);
            if !keep {
                m.outbox.end(EndReason::Unauthorized);
            }
            keep
        };
        self.members.retain(|_, m| revoke(m));
        self.joiners.retain(|j| revoke(&j.member));
        self.joining.retain(|j| revoke(&j.member));
    }

    fn is_followed(&self) -> bool {
        !self.members.is_empty() || !self.joiners.is_empty() || !self.joining.is_empty()
    }

    fn tick(&mut self, ctx: &mut Context<Self>) {
        let Some(shared) = self.shared.upgrade() else {
            ctx.stop();
            return;
        };
        self.check_access(&shared);
        if !self.is_followed() {
            let idle = *self.idle_since.get_or_insert_with(Instant::now);
            let kept = Duration::from_secs(shared.settings.resume_seconds);
            if idle.elapsed() >= kept && (self.forget)() {
                ctx.stop();
            }
            return;
        }
        if !self.polling {
            self.start_poll(ctx);
        }
    }
}

impl Actor for TailHub {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        if let Some(shared) = self.shared.upgrade() {
            let every = Duration::from_millis(shared.settings.poll_interval_ms);
            ctx.run_interval(every, Self::tick);
        }
    }

    fn stopped(&mut self, _ctx: &mut Self::Context) {
        (self.forget)();
        for m in self.members.values() {
            m.outbox.end(EndReason::Shutdown);
        }
    }
}

impl Handler<Join> for TailHub {
    type Result = ();

    fn handle(&mut self, msg: Join, ctx: &mut Self::Context) {
        self.idle_since = None;
        let continuous = self.primed && !self.members.is_empty();
        let after = match msg.start {
            Start::After(id) if id.incarnation == self.incarnation && self.can_replay(id.seq) => {
                for event in self.ring.iter().filter(|e| e.seq > id.seq) {
                    if msg.member.outbox.push(event.frame.clone()).is_err() {
                        return;
                    }
                }
                self.members.insert(msg.id, msg.member);
                return;
            }
            Start::After(id) => id.position,
            Start::Now { .. } if continuous => {
                self.members.insert(msg.id, msg.member);
                return;
            }
            Start::Now { opened_ms } => Position {
                ts: opened_ms - 1,
                tie: u64::MAX,
                dup: u32::MAX,
            },
        };
        self.joiners.push(Joiner {
            id: msg.id,
            member: msg.member,
            after,
        });
        // The first stream of a new poller need not wait a whole interval.
        if !self.primed && !self.polling {
            self.start_poll(ctx);
        }
    }
}

impl Handler<Leave> for TailHub {
    type Result = ();

    fn handle(&mut self, msg: Leave, _ctx: &mut Self::Context) {
        self.members.remove(&msg.id);
        self.joiners.retain(|j| j.id != msg.id);
        self.joining.retain(|j| j.id != msg.id);
        if !self.is_followed() {
            self.idle_since = Some(Instant::now());
        }
    }
}
