//! `Ledger`: the page cache's bytes, by tenant (CONTRACT.md §10). It holds the byte budget:
//! before a page goes in, it says which pages go out. A tenant past its share
//! (`tenant_share x max_bytes`) makes room only out of its own pages; a tenant within its
//! share takes room from the tenant furthest past its own. Within a tenant, the least useful
//! page goes first: the one asked least since it was fetched (a one-off key, never asked
//! again, before any page asked again and again), the oldest among equals.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Weak};

use crate::domain::QueryKey;
use crate::page::Page;

/// Whose bytes a page counts in: a configured tenant, or `None` (an app no tenant owns).
pub type Owner = Option<Arc<str>>;

/// A page the ledger counts. Weak: it keeps no page alive, and the allocation it keeps
/// means its address is not reused while the ledger still compares against it.
struct Held {
    page: Weak<Page>,
    weight: u64,
    owner: Owner,
}

#[derive(Default)]
struct TenantBytes {
    bytes: u64,
    keys: HashSet<QueryKey>,
    /// Pages evicted to make room, since start.
    evictions: u64,
}

/// The ledger proper; `PageCache` holds it under a mutex and mirrors every change in moka
/// while holding it.
pub struct Ledger {
    max_bytes: u64,
    used: u64,
    pages: HashMap<QueryKey, Held>,
    tenants: HashMap<Owner, TenantBytes>,
    /// The configured tenants: each has a share. The rest (`None`, or a tenant a reload
    /// removed) may use the whole budget.
    configured: HashSet<Arc<str>>,
}

/// What the cache must do to keep a page: drop `victims` first (already taken off the
/// ledger), or not keep it at all.
#[derive(Debug, PartialEq, Eq)]
pub enum Room {
    Made { victims: Vec<QueryKey> },
    None,
}

impl Ledger {
    pub fn new(max_bytes: u64) -> Self {
        Self {
            max_bytes,
            used: 0,
            pages: HashMap::new(),
            tenants: HashMap::new(),
            configured: HashSet::new(),
        }
    }

    /// `(pages, bytes)` counted now.
    pub fn usage(&self) -> (u64, u64) {
        (self.pages.len() as u64, self.used)
    }

    /// Bytes and evictions of a tenant.
    pub fn tenant(&self, name: &str) -> (u64, u64) {
        self.tenants
            .get(&Some(Arc::from(name)))
            .map_or((0, 0), |t| (t.bytes, t.evictions))
    }

    /// The configured tenants now; returns the keys of the pages of tenants no longer
    /// configured (the caller drops them: they lose their place with their share).
    pub fn configure(&mut self, names: &[Arc<str>]) -> Vec<QueryKey> {
        self.configured = names.iter().cloned().collect();
        let gone: Vec<Owner> = self
            .tenants
            .keys()
            .filter(|o| matches!(o, Some(n) if !self.configured.contains(n)))
            .cloned()
            .collect();
        let mut keys = Vec::new();
        for owner in gone {
            if let Some(t) = self.tenants.remove(&owner) {
                for key in t.keys {
                    if let Some(held) = self.pages.remove(&key) {
                        self.used -= held.weight;
                    }
                    keys.push(key);
                }
            }
        }
        keys
    }

    fn share_of(&self, owner: &Owner, share: f64) -> u64 {
        match owner {
            Some(name) if self.configured.contains(name) => (self.max_bytes as f64 * share) as u64,
            _ => self.max_bytes,
        }
    }

    /// Whether `page` is the page the ledger counts under `key`.
    pub fn holds(&self, key: &QueryKey, page: &Arc<Page>) -> bool {
        self.pages
            .get(key)
            .is_some_and(|h| std::ptr::eq(h.page.as_ptr(), Arc::as_ptr(page)))
    }

    /// moka let go of `page` (expired): off the ledger, if it still counts it.
    pub fn forget(&mut self, key: &QueryKey, page: &Weak<Page>) {
        let counted = self
            .pages
            .get(key)
            .is_some_and(|h| std::ptr::eq(h.page.as_ptr(), page.as_ptr()));
        if counted {
            self.remove(key);
        }
    }

    fn remove(&mut self, key: &QueryKey) -> Option<Held> {
        let held = self.pages.remove(key)?;
        self.used -= held.weight;
        if let Some(t) = self.tenants.get_mut(&held.owner) {
            t.bytes -= held.weight;
            t.keys.remove(key);
        }
        Some(held)
    }

    /// Counts `page` (of `weight` bytes, owned by `owner`) under `key`, replacing what was
    /// counted there, after taking the room it needs off the ledger. `Room::None`: it cannot
    /// be kept (larger than the budget, or its tenant is past its share and has nothing of
    /// its own left to give); the ledger is then as it was, less the replaced page.
    pub fn admit(
        &mut self,
        key: &QueryKey,
        page: &Arc<Page>,
        weight: u64,
        owner: &Owner,
        share: f64,
    ) -> Room {
        if let Some(old) = self.remove(key) {
            // A refreshed page inherits half of what its predecessor was asked.
            if let Some(old) = old.page.upgrade() {
                page.inherit_uses(&old);
            }
        }
        let Some(victims) = self.plan(key, weight, owner, share) else {
            return Room::None;
        };
        for victim in &victims {
            if let Some(held) = self.remove(victim) {
                if let Some(t) = self.tenants.get_mut(&held.owner) {
                    t.evictions += 1;
                }
            }
        }
        self.used += weight;
        let t = self.tenants.entry(owner.clone()).or_default();
        t.bytes += weight;
        t.keys.insert(key.clone());
        self.pages.insert(
            key.clone(),
            Held {
                page: Arc::downgrade(page),
                weight,
                owner: owner.clone(),
            },
        );
        Room::Made { victims }
    }

    /// The page counted under `key` grew to `weight` bytes (a compressed view): the room
    /// it needs, or `Room::None` (then it is off the ledger, and the caller drops it).
    pub fn grow(&mut self, key: &QueryKey, weight: u64, share: f64) -> Room {
        let Some(held) = self.pages.get(key) else {
            return Room::Made {
                victims: Vec::new(),
            };
        };
        let (old, owner) = (held.weight, held.owner.clone());
        let Some(page) = held.page.upgrade() else {
            return Room::Made {
                victims: Vec::new(),
            };
        };
        self.remove(key);
        self.admit(key, &page, weight.max(old), &owner, share)
    }

    /// The pages to drop so that `weight` more bytes of `owner` fit, without touching `keep`;
    /// `None` when they cannot.
    fn plan(
        &self,
        keep: &QueryKey,
        weight: u64,
        owner: &Owner,
        share: f64,
    ) -> Option<Vec<QueryKey>> {
        if weight > self.max_bytes {
            return None;
        }
        let mut used = self.used;
        let mut bytes: HashMap<&Owner, u64> =
            self.tenants.iter().map(|(o, t)| (o, t.bytes)).collect();
        let mut taken: HashSet<&QueryKey> = HashSet::from([keep]);
        let mut victims = Vec::new();
        while used + weight > self.max_bytes {
            let mine = bytes.get(owner).copied().unwrap_or(0);
            let from = if mine + weight > self.share_of(owner, share) {
                owner
            } else {
                // The tenant furthest past its share; if none is, the largest.
                let over = |o: &&Owner| {
                    let b = bytes.get(*o).copied().unwrap_or(0);
                    b.saturating_sub(self.share_of(o, share))
                };
                let candidates = self
                    .tenants
                    .keys()
                    .filter(|o| bytes.get(o).copied().unwrap_or(0) > 0);
                let furthest = candidates.clone().filter(|o| *o != owner).max_by_key(over);
                match furthest.filter(|o| over(o) > 0) {
                    Some(o) => o,
                    None => candidates.max_by_key(|o| bytes.get(o).copied().unwrap_or(0))?,
                }
            };
            let victim = self.least_useful(from, &taken)?;
            let weight_of = self.pages[victim].weight;
            used -= weight_of;
            *bytes.get_mut(from).expect("a tenant with pages") -= weight_of;
            taken.insert(victim);
            victims.push(victim.clone());
        }
        Some(victims)
    }

    /// `owner`'s least useful page not in `taken`: a page already freed first, then the
    /// fewest uses, then the oldest.
    fn least_useful<'a>(
        &'a self,
        owner: &Owner,
        taken: &HashSet<&QueryKey>,
    ) -> Option<&'a QueryKey> {
        let tenant = self.tenants.get(owner)?;
        tenant
            .keys
            .iter()
            .filter(|k| !taken.contains(k))
            .min_by_key(|k| match self.pages[*k].page.upgrade() {
                None => (false, 0, None),
                Some(p) => (true, p.uses(), Some(p.fetched_at)),
            })
    }
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use super::*;
    use crate::clickhouse::RuntimeRow;
    use crate::domain::LogType;

    const SHARE: f64 = 0.5;

    fn key(app: &str, hours: u32) -> QueryKey {
        QueryKey {
            app_id: app.into(),
            log_type: LogType::Runtime,
            hours,
            level: None,
            range: None,
            after: None,
        }
    }

    fn page() -> Arc<Page> {
        let row = RuntimeRow {
            app_id: "a".into(),
            timestamp_ms: 1,
            level: "info".into(),
            message: "m".into(),
            route_path: "/".into(),
            request_id: "r".into(),
        };
        Arc::new(Page::from_runtime("a", &[row], 10, Instant::now()))
    }

    fn owner(name: &str) -> Owner {
        Some(name.into())
    }

    /// A ledger of 1,000 bytes with tenants a and b configured.
    fn ledger() -> Ledger {
        let mut l = Ledger::new(1_000);
        l.configure(&["a".into(), "b".into()]);
        l
    }

    /// Admits a page of `weight` bytes for `who`; returns the victims (panics on `None`).
    fn put(
        l: &mut Ledger,
        who: &str,
        k: &QueryKey,
        weight: u64,
        pages: &mut Vec<Arc<Page>>,
    ) -> Vec<QueryKey> {
        let p = page();
        pages.push(p.clone());
        match l.admit(k, &p, weight, &owner(who), SHARE) {
            Room::Made { victims } => victims,
            Room::None => panic!("no room for {k:?}"),
        }
    }

    #[test]
    fn a_tenant_may_pass_its_share_while_the_cache_has_room() {
        let (mut l, mut keep) = (ledger(), Vec::new());
        for h in 0..8 {
            assert!(put(&mut l, "a", &key("a", h), 100, &mut keep).is_empty());
        }
        assert_eq!(l.tenant("a").0, 800, "past its 500, with room left");
        assert_eq!(l.usage(), (8, 800));
    }

    #[test]
    fn past_its_share_a_tenant_evicts_its_own_pages_never_anothers() {
        let (mut l, mut keep) = (ledger(), Vec::new());
        for h in 0..3 {
            put(&mut l, "b", &key("b", h), 100, &mut keep);
        }
        for h in 0..7 {
            put(&mut l, "a", &key("a", h), 100, &mut keep);
        }
        assert_eq!(l.usage().1, 1_000, "full");
        for h in 7..30 {
            let victims = put(&mut l, "a", &key("a", h), 100, &mut keep);
            assert!(victims.iter().all(|v| &*v.app_id == "a"), "{victims:?}");
        }
        assert_eq!(l.tenant("b").0, 300);
        assert_eq!(l.tenant("a").0, 700);
        assert!(l.tenant("a").1 >= 23, "a's own pages were evicted");
        assert_eq!(l.tenant("b").1, 0);
    }

    #[test]
    fn within_its_share_a_tenant_takes_room_from_the_one_furthest_past_its_own() {
        let (mut l, mut keep) = (ledger(), Vec::new());
        for h in 0..9 {
            put(&mut l, "a", &key("a", h), 100, &mut keep);
        }
        put(&mut l, "b", &key("b", 0), 100, &mut keep);
        let victims = put(&mut l, "b", &key("b", 1), 100, &mut keep);
        assert_eq!(victims.len(), 1);
        assert_eq!(&*victims[0].app_id, "a");
        // b grows up to its share, a shrinks down to its own.
        for h in 2..5 {
            put(&mut l, "b", &key("b", h), 100, &mut keep);
        }
        assert_eq!((l.tenant("a").0, l.tenant("b").0), (500, 500));
        let victims = put(&mut l, "b", &key("b", 9), 100, &mut keep);
        assert!(
            victims.iter().all(|v| &*v.app_id == "b"),
            "b is at its share now"
        );
    }

    #[test]
    fn one_off_pages_go_before_pages_asked_again_and_again() {
        let (mut l, mut keep) = (ledger(), Vec::new());
        put(&mut l, "a", &key("a", 0), 100, &mut keep);
        let polled = keep[0].clone();
        for _ in 0..5 {
            polled.note_use();
        }
        for h in 1..10 {
            put(&mut l, "a", &key("a", h), 100, &mut keep);
        }
        for h in 10..100 {
            put(&mut l, "a", &key("a", h), 100, &mut keep);
            assert!(l.holds(&key("a", 0), &polled), "the polled page stays");
        }
        // A refreshed page keeps half its predecessor's uses.
        let refreshed = page();
        l.admit(&key("a", 0), &refreshed, 100, &owner("a"), SHARE);
        assert_eq!(refreshed.uses(), 2);
    }

    #[test]
    fn a_page_of_a_tenant_past_its_share_with_nothing_to_give_is_not_kept() {
        let (mut l, mut keep) = (ledger(), Vec::new());
        for h in 0..10 {
            put(&mut l, "b", &key("b", h), 100, &mut keep);
        }
        let p = page();
        assert_eq!(
            l.admit(&key("a", 0), &p, 600, &owner("a"), SHARE),
            Room::None
        );
        assert_eq!(l.tenant("b").0, 1_000, "b keeps its pages");
        assert_eq!(l.admit(&key("x", 0), &p, 1_001, &None, SHARE), Room::None);
    }

    #[test]
    fn expired_and_unconfigured_pages_leave_the_ledger() {
        let (mut l, mut keep) = (ledger(), Vec::new());
        put(&mut l, "a", &key("a", 0), 100, &mut keep);
        put(&mut l, "b", &key("b", 0), 100, &mut keep);
        let stale = Arc::downgrade(&page());
        l.forget(&key("a", 0), &stale);
        assert_eq!(l.usage(), (2, 200), "another page: nothing changes");
        l.forget(&key("a", 0), &Arc::downgrade(&keep[0]));
        assert_eq!(l.usage(), (1, 100));
        let dropped = l.configure(&["a".into()]);
        assert_eq!(dropped, [key("b", 0)]);
        assert_eq!(l.usage(), (0, 0));
    }
}
