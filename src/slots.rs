//! `QuerySlots`: the process's ClickHouse query slots, shared fairly between tenants
//! (CONTRACT.md §10). Misses that wait are served round robin between tenants, then between
//! the tenant's apps, first come first served within an app (the shape of Loki's query
//! scheduler). A tenant never holds more than its cap, an app never more than its own, and
//! every waiter's deadline is its own: a tenant with a long queue delays nobody else.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

use prometheus::{Histogram, HistogramVec, IntGauge, IntGaugeVec, Registry};
use tokio::sync::oneshot;

use crate::metrics::{gauge, gauge_vec, histogram, histogram_vec};

/// Whose query asks for a slot: its tenant (`None`: an app no configured tenant owns, which
/// has no cap but the process's) and its app.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Claimant {
    pub tenant: Option<Arc<str>>,
    pub app: Arc<str>,
}

/// A tenant's metric handles (`logproxy_tenant_query_slots_in_use`,
/// `logproxy_tenant_queue_wait_seconds`).
#[derive(Clone)]
pub struct TenantSlotMetrics {
    pub in_use: IntGauge,
    pub queue_wait: Histogram,
}

/// The query slots' metrics: the process's slots in use and its misses' wait for them, and
/// each configured tenant's slots, cap and wait.
pub struct SlotMetrics {
    pub in_use: IntGauge,
    pub queue_wait: Histogram,
    tenant_in_use: IntGaugeVec,
    tenant_limit: IntGaugeVec,
    tenant_queue_wait: HistogramVec,
}

impl SlotMetrics {
    pub fn register(registry: &Registry) -> Self {
        let tenant_gauge = |name, help| gauge_vec(registry, name, help, &["tenant"]);
        Self {
            in_use: gauge(
                registry,
                "logproxy_query_slots_in_use",
                "Query slots of the process held now (of clickhouse.max_concurrent_queries).",
            ),
            queue_wait: histogram(
                registry,
                "logproxy_query_queue_wait_seconds",
                "Time a miss waited for its query slots (the app's, then the process's).",
            ),
            tenant_in_use: tenant_gauge(
                "logproxy_tenant_query_slots_in_use",
                "Query slots each tenant holds now.",
            ),
            tenant_limit: tenant_gauge(
                "logproxy_tenant_query_slots_limit",
                "Query slots a tenant may hold at most (clickhouse.max_concurrent_queries_per_tenant).",
            ),
            tenant_queue_wait: histogram_vec(
                registry,
                "logproxy_tenant_queue_wait_seconds",
                "Time each tenant's misses waited for a query slot.",
                &["tenant"],
            ),
        }
    }

    /// Creates the series of a configured tenant, with its cap, and returns its handles.
    pub fn add_tenant(&self, name: &str, limit: usize) -> TenantSlotMetrics {
        self.tenant_limit
            .with_label_values(&[name])
            .set(limit as i64);
        TenantSlotMetrics {
            in_use: self.tenant_in_use.with_label_values(&[name]),
            queue_wait: self.tenant_queue_wait.with_label_values(&[name]),
        }
    }

    /// Drops the series of a tenant a reload removed.
    pub fn remove_tenant(&self, name: &str) {
        let _ = self.tenant_in_use.remove_label_values(&[name]);
        let _ = self.tenant_limit.remove_label_values(&[name]);
        let _ = self.tenant_queue_wait.remove_label_values(&[name]);
    }
}

/// The caps, and where a tenant's metrics are.
pub struct SlotLimits {
    pub total: usize,
    pub per_tenant: usize,
    pub per_app: usize,
}

pub struct QuerySlots {
    limits: SlotLimits,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    in_use: usize,
    /// Every tenant that holds or waits for a slot (`None`: the unowned apps).
    tenants: HashMap<Option<Arc<str>>, TenantQueue>,
    /// Tenants with waiters, in round-robin order.
    ring: VecDeque<Option<Arc<str>>>,
    /// Handles of the configured tenants' metrics.
    metrics: HashMap<Arc<str>, TenantSlotMetrics>,
    next_id: u64,
}

#[derive(Default)]
struct TenantQueue {
    in_use: usize,
    apps: HashMap<Arc<str>, AppQueue>,
    /// This tenant's apps with waiters, in round-robin order.
    ring: VecDeque<Arc<str>>,
}

#[derive(Default)]
struct AppQueue {
    in_use: usize,
    waiters: VecDeque<Waiter>,
}

struct Waiter {
    id: u64,
    grant: oneshot::Sender<Slot>,
}

/// One query slot, held until dropped.
pub struct Slot {
    slots: Arc<QuerySlots>,
    claimant: Claimant,
    /// Cleared when a grant could not be delivered: the counts were already taken back.
    live: bool,
}

impl Drop for Slot {
    fn drop(&mut self) {
        if self.live {
            let mut state = self.slots.lock();
            state.release(&self.claimant);
            state.dispatch(&self.slots);
        }
    }
}

/// No slot freed for the claimant before its deadline.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimedOut;

impl QuerySlots {
    pub fn new(limits: SlotLimits) -> Arc<Self> {
        Arc::new(Self {
            limits,
            state: Mutex::new(State::default()),
        })
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Sets the configured tenants and their metric handles (at start and on reload);
    /// a tenant no longer configured keeps no handles (its slots are counted as before).
    pub fn set_tenants(&self, metrics: HashMap<Arc<str>, TenantSlotMetrics>) {
        let mut state = self.lock();
        for (name, handles) in &metrics {
            let held = state
                .tenants
                .get(&Some(name.clone()))
                .map_or(0, |t| t.in_use);
            handles.in_use.set(held as i64);
        }
        state.metrics = metrics;
    }

    /// A slot for `claimant`, waiting until `deadline` at most, in fair turn with the others.
    pub async fn acquire(
        self: &Arc<Self>,
        claimant: &Claimant,
        deadline: tokio::time::Instant,
    ) -> Result<Slot, TimedOut> {
        let queued = Instant::now();
        let (id, granted) = {
            let mut state = self.lock();
            if state.may_take(&self.limits, claimant) {
                state.take(claimant);
                drop(state);
                self.observe_wait(claimant, queued);
                return Ok(self.slot(claimant));
            }
            let (tx, rx) = oneshot::channel();
            let id = state.enqueue(claimant, tx);
            (id, rx)
        };
        // Leaves the queue however the wait ends (granted, timed out, or dropped).
        let leave = Leave {
            slots: self,
            claimant,
            id,
        };
        let outcome = tokio::time::timeout_at(deadline, granted).await;
        drop(leave);
        self.observe_wait(claimant, queued);
        match outcome {
            Ok(Ok(slot)) => Ok(slot),
            _ => Err(TimedOut),
        }
    }

    /// A slot now if one is free for `claimant` within its caps, without waiting (for an
    /// extra attempt of a query: it takes no slot a waiter could have).
    pub fn try_acquire(self: &Arc<Self>, claimant: &Claimant) -> Option<Slot> {
        let mut state = self.lock();
        if !state.may_take(&self.limits, claimant) {
            return None;
        }
        state.take(claimant);
        Some(self.slot(claimant))
    }

    fn slot(self: &Arc<Self>, claimant: &Claimant) -> Slot {
        Slot {
            slots: self.clone(),
            claimant: claimant.clone(),
            live: true,
        }
    }

    fn observe_wait(&self, claimant: &Claimant, since: Instant) {
        if let Some(name) = &claimant.tenant {
            let state = self.lock();
            if let Some(m) = state.metrics.get(name) {
                m.queue_wait.observe(since.elapsed().as_secs_f64());
            }
        }
    }

    /// Slots held now: by all, and by one tenant.
    pub fn in_use(&self) -> usize {
        self.lock().in_use
    }

    pub fn tenant_in_use(&self, tenant: &str) -> usize {
        let key = Some(Arc::<str>::from(tenant));
        self.lock().tenants.get(&key).map_or(0, |t| t.in_use)
    }
}

/// Removes a waiter from its queue when its wait ends without a grant.
struct Leave<'a> {
    slots: &'a Arc<QuerySlots>,
    claimant: &'a Claimant,
    id: u64,
}

impl Drop for Leave<'_> {
    fn drop(&mut self) {
        self.slots.lock().forget(self.claimant, self.id);
    }
}

impl State {
    /// Whether `c` may take a slot now: one is free, neither its tenant nor its app is at its
    /// cap, and nobody of its app waits ahead of it.
    fn may_take(&self, limits: &SlotLimits, c: &Claimant) -> bool {
        if self.in_use >= limits.total {
            return false;
        }
        let tenant_cap = match c.tenant {
            Some(_) => limits.per_tenant,
            None => limits.total,
        };
        let Some(tenant) = self.tenants.get(&c.tenant) else {
            return true;
        };
        if tenant.in_use >= tenant_cap {
            return false;
        }
        match tenant.apps.get(&c.app) {
            None => true,
            Some(app) => app.in_use < limits.per_app && app.waiters.is_empty(),
        }
    }

    fn take(&mut self, c: &Claimant) {
        self.in_use += 1;
        let tenant = self.tenants.entry(c.tenant.clone()).or_default();
        tenant.in_use += 1;
        tenant.apps.entry(c.app.clone()).or_default().in_use += 1;
        let held = tenant.in_use;
        self.gauge(c, held);
    }

    fn release(&mut self, c: &Claimant) {
        self.in_use -= 1;
        let Some(tenant) = self.tenants.get_mut(&c.tenant) else {
            return;
        };
        tenant.in_use -= 1;
        if let Some(app) = tenant.apps.get_mut(&c.app) {
            app.in_use -= 1;
            if app.in_use == 0 && app.waiters.is_empty() {
                tenant.apps.remove(&c.app);
            }
        }
        let held = tenant.in_use;
        if held == 0 && tenant.apps.is_empty() {
            self.tenants.remove(&c.tenant);
        }
        self.gauge(c, held);
    }

    fn gauge(&self, c: &Claimant, held: usize) {
        if let Some(m) = c.tenant.as_ref().and_then(|t| self.metrics.get(t)) {
            m.in_use.set(held as i64);
        }
    }

    fn enqueue(&mut self, c: &Claimant, grant: oneshot::Sender<Slot>) -> u64 {
        let id = self.next_id;
        self.next_id += 1;
        let tenant = self.tenants.entry(c.tenant.clone()).or_default();
        let app = tenant.apps.entry(c.app.clone()).or_default();
        app.waiters.push_back(Waiter { id, grant });
        if app.waiters.len() == 1 {
            tenant.ring.push_back(c.app.clone());
            if tenant.ring.len() == 1 {
                self.ring.push_back(c.tenant.clone());
            }
        }
        id
    }

    /// Takes waiter `id` out of its queue, if it is still there.
    fn forget(&mut self, c: &Claimant, id: u64) {
        let Some(tenant) = self.tenants.get_mut(&c.tenant) else {
            return;
        };
        let Some(app) = tenant.apps.get_mut(&c.app) else {
            return;
        };
        let before = app.waiters.len();
        app.waiters.retain(|w| w.id != id);
        if app.waiters.len() == before || !app.waiters.is_empty() {
            return;
        }
        tenant.ring.retain(|a| *a != c.app);
        if app.in_use == 0 {
            tenant.apps.remove(&c.app);
        }
        if tenant.ring.is_empty() {
            self.ring.retain(|t| *t != c.tenant);
            if tenant.in_use == 0 && tenant.apps.is_empty() {
                self.tenants.remove(&c.tenant);
            }
        }
    }

    /// Hands free slots to waiters: the next tenant in turn that is under its cap, its next
    /// app in turn that is under its own, that app's oldest waiter.
    fn dispatch(&mut self, slots: &Arc<QuerySlots>) {
        let limits = &slots.limits;
        let mut skipped = 0;
        while self.in_use < limits.total && skipped < self.ring.len() {
            let Some(tenant_key) = self.ring.pop_front() else {
                return;
            };
            let cap = match tenant_key {
                Some(_) => limits.per_tenant,
                None => limits.total,
            };
            let Some(next) = self.next_of(&tenant_key, cap, limits.per_app) else {
                // At its cap, or only apps at theirs: its turn passes.
                self.ring.push_back(tenant_key);
                skipped += 1;
                continue;
            };
            skipped = 0;
            let claimant = Claimant {
                tenant: tenant_key.clone(),
                app: next.0,
            };
            let waiter = next.1;
            self.take(&claimant);
            let tenant = self.tenants.get(&tenant_key).expect("taken above");
            if !tenant.ring.is_empty() {
                self.ring.push_back(tenant_key);
            }
            let slot = slots.slot(&claimant);
            if let Err(mut undelivered) = waiter.grant.send(slot) {
                // Its wait ended a moment ago: take the counts back here (dropping the slot
                // would lock the state again) and go on.
                undelivered.live = false;
                self.release(&claimant);
            }
        }
    }

    /// The app and waiter that get `tenant`'s next slot, taken out of their queue.
    fn next_of(
        &mut self,
        tenant_key: &Option<Arc<str>>,
        cap: usize,
        per_app: usize,
    ) -> Option<(Arc<str>, Waiter)> {
        let tenant = self.tenants.get_mut(tenant_key)?;
        if tenant.in_use >= cap {
            return None;
        }
        for _ in 0..tenant.ring.len() {
            let app_key = tenant.ring.pop_front()?;
            let app = tenant
                .apps
                .get_mut(&app_key)
                .expect("an app in the ring has waiters");
            if app.in_use >= per_app {
                tenant.ring.push_back(app_key);
                continue;
            }
            let waiter = app
                .waiters
                .pop_front()
                .expect("an app in the ring has waiters");
            if !app.waiters.is_empty() {
                tenant.ring.push_back(app_key.clone());
            }
            return Some((app_key, waiter));
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex as StdMutex;
    use std::time::Duration;

    use super::*;

    fn slots(total: usize, per_tenant: usize, per_app: usize) -> Arc<QuerySlots> {
        QuerySlots::new(SlotLimits {
            total,
            per_tenant,
            per_app,
        })
    }

    fn who(tenant: &str, app: &str) -> Claimant {
        Claimant {
            tenant: Some(tenant.into()),
            app: app.into(),
        }
    }

    fn later() -> tokio::time::Instant {
        tokio::time::Instant::now() + Duration::from_secs(60)
    }

    /// Queues one waiter per claimant, in order; each records its label when granted and
    /// holds its slot until the returned sender for it is used (or dropped).
    async fn queue(
        s: &Arc<QuerySlots>,
        claimants: &[Claimant],
        order: &Arc<StdMutex<Vec<String>>>,
    ) -> Vec<oneshot::Sender<()>> {
        let mut releases = Vec::new();
        for c in claimants {
            let (release, held) = oneshot::channel::<()>();
            let (s, c, order) = (s.clone(), c.clone(), order.clone());
            tokio::spawn(async move {
                let slot = s.acquire(&c, later()).await.expect("granted");
                let label = format!("{}/{}", c.tenant.as_deref().unwrap_or("-"), c.app);
                order.lock().unwrap().push(label);
                let _ = held.await;
                drop(slot);
            });
            tokio::task::yield_now().await;
            releases.push(release);
        }
        releases
    }

    async fn settle() {
        for _ in 0..10 {
            tokio::task::yield_now().await;
        }
    }

    #[tokio::test]
    async fn waiters_are_served_round_robin_between_tenants_then_apps_fifo_within_an_app() {
        let s = slots(1, 1, 1);
        let holder = s.acquire(&who("c", "c1"), later()).await.unwrap();
        let order = Arc::new(StdMutex::new(Vec::new()));
        let waiting = [
            who("a", "a1"),
            who("a", "a1"),
            who("a", "a2"),
            who("a", "a3"),
            who("b", "b1"),
            who("b", "b1"),
        ];
        let mut releases = queue(&s, &waiting, &order).await.into_iter();
        assert!(order.lock().unwrap().is_empty(), "the one slot is held");
        drop(holder);
        for _ in 0..waiting.len() {
            settle().await;
            // Each grantee gives its slot back at once, so the next in turn gets it.
            let _ = releases.next();
        }
        settle().await;
        assert_eq!(
            *order.lock().unwrap(),
            ["a/a1", "b/b1", "a/a2", "b/b1", "a/a3", "a/a1"],
            "a tenant with three apps gets no more turns than one with one app"
        );
        assert_eq!(s.in_use(), 0);
    }

    #[tokio::test]
    async fn a_tenant_alone_never_holds_more_than_its_cap_and_an_app_more_than_its_own() {
        let s = slots(8, 3, 2);
        let mut held = Vec::new();
        for app in ["a1", "a1", "a2"] {
            held.push(s.acquire(&who("a", app), later()).await.unwrap());
        }
        assert!(s.try_acquire(&who("a", "a3")).is_none(), "tenant a is at 3");
        assert_eq!(s.tenant_in_use("a"), 3);
        let b = s.try_acquire(&who("b", "b1")).expect("b is under its cap");
        let b2 = s.try_acquire(&who("b", "b1")).expect("b1's second slot");
        assert!(s.try_acquire(&who("b", "b1")).is_none(), "app b1 is at 2");
        drop((b, b2));
        assert_eq!(s.in_use(), 3);
        let unowned = Claimant {
            tenant: None,
            app: "free".into(),
        };
        let free: Vec<_> = (0..4).filter_map(|_| s.try_acquire(&unowned)).collect();
        assert_eq!(free.len(), 2, "no tenant: no tenant cap, but the app's");
        drop(held);
        assert_eq!(s.in_use(), 2);
    }

    #[tokio::test]
    async fn a_waiter_past_its_deadline_leaves_and_the_others_are_still_served() {
        let s = slots(1, 1, 1);
        let holder = s.acquire(&who("a", "a1"), later()).await.unwrap();
        let soon = tokio::time::Instant::now() + Duration::from_millis(20);
        assert_eq!(s.acquire(&who("a", "a1"), soon).await.err(), Some(TimedOut));
        let order = Arc::new(StdMutex::new(Vec::new()));
        let _releases = queue(&s, &[who("b", "b1")], &order).await;
        drop(holder);
        settle().await;
        assert_eq!(*order.lock().unwrap(), ["b/b1"]);
        assert_eq!(s.tenant_in_use("a"), 0);
        assert_eq!(s.tenant_in_use("b"), 1);
    }

    #[tokio::test]
    async fn a_free_slot_goes_to_no_claimant_whose_app_has_waiters_ahead_of_it() {
        let s = slots(2, 2, 1);
        let first = s.acquire(&who("a", "a1"), later()).await.unwrap();
        let order = Arc::new(StdMutex::new(Vec::new()));
        let _releases = queue(&s, &[who("a", "a1")], &order).await;
        assert!(s.try_acquire(&who("a", "a1")).is_none(), "one waits ahead");
        drop(first);
        settle().await;
        assert_eq!(*order.lock().unwrap(), ["a/a1"]);
    }
}
