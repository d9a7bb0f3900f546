//! `Front`: an app actor's shortcut to the pages it served last, checked before moka.

use std::sync::{Arc, Weak};

use crate::domain::{LogType, Position, QueryKey, Window};
use crate::page::Page;

/// Keys an actor's `Front` remembers: an app asks for a few variants at most.
pub(super) const FRONT_SLOTS: usize = 4;

/// One hit in this many through a `Front` goes through moka anyway, so moka's eviction
/// order and frequency sketch still see the page in use.
pub(super) const FRONT_CHECK_EVERY: u32 = 8;

/// An app actor's shortcut to the pages it served last. With many apps, moka's lookup
/// (hash table, read log, access-order deque) is cold memory on every hit; the front lives
/// in the actor, which the request touches anyway. It keeps no page alive (weak
/// references), and a page the cache let go of (`Page::is_retired`) is not served through
/// it. The actor serves one app, so the app id is not compared.
#[derive(Default)]
pub struct Front {
    /// Inline, not a `Vec`: they sit next to the rest of the actor, not in memory of their
    /// own that a hit would have to fetch.
    slots: [Option<FrontSlot>; FRONT_SLOTS],
    /// The slot the next new key takes.
    next: usize,
    pub(super) hits: u32,
}

struct FrontSlot {
    log_type: LogType,
    hours: u32,
    level: Option<Arc<str>>,
    range: Option<Window>,
    after: Option<Position>,
    page: Weak<Page>,
}

impl FrontSlot {
    /// Whether this slot is `key`'s: everything of the key but the app (the actor's own).
    fn is(&self, key: &QueryKey) -> bool {
        self.log_type == key.log_type
            && self.hours == key.hours
            && self.level == key.level
            && self.range == key.range
            && self.after == key.after
    }
}

impl Front {
    fn find(&mut self, key: &QueryKey) -> Option<&mut FrontSlot> {
        self.slots.iter_mut().flatten().find(|s| s.is(key))
    }

    pub(super) fn get(&mut self, key: &QueryKey) -> Option<Arc<Page>> {
        self.find(key)?.page.upgrade()
    }

    pub(super) fn put(&mut self, key: &QueryKey, page: &Arc<Page>) {
        let page = Arc::downgrade(page);
        if let Some(slot) = self.find(key) {
            slot.page = page;
            return;
        }
        self.slots[self.next] = Some(FrontSlot {
            log_type: key.log_type,
            hours: key.hours,
            level: key.level.clone(),
            range: key.range,
            after: key.after,
            page,
        });
        self.next = (self.next + 1) % FRONT_SLOTS;
    }
}
