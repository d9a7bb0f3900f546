//! `Page`: a ready 200 body with the end offset, timestamp and tie of every entry, so one
//! fetched page answers any smaller `limit` by slicing (with the `next_cursor` of that
//! slice), and a refresh of a moving window can keep its older entries as they are
//! (`builder.rs`), without serializing again.

mod builder;
mod shared;
mod weight;

use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::Mutex;
use std::time::Instant;

use actix_web::http::header::HeaderValue;
use bytes::{BufMut, Bytes, BytesMut};

use crate::domain::{Cursor, Position, Window};
use crate::encoding::Coding;

pub use builder::PageBuilder;

/// `message` is cut to this many characters (not bytes).
pub const MESSAGE_MAX_CHARS: usize = 2000;

/// What closes the entries, before the cursor (`"..."` or `null`) and the body's `}`.
const NEXT_CURSOR: &[u8] = b"],\"next_cursor\":";

/// What a page's cursors carry besides a position (CONTRACT.md §14): its listing (app,
/// `log_type`, `level`) as a hash, its window, and the cursor it continues, if any.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Listing {
    pub binding: u64,
    pub window: Window,
    pub after: Option<Position>,
}

/// At most this many compressed views are kept per page (a view per limit and coding).
const MAX_ENCODED: usize = 12;

#[derive(Debug)]
pub struct Page {
    body: Bytes,
    /// End offset (exclusive) of each entry inside `body`.
    ends: Vec<u32>,
    /// Each entry's timestamp (epoch ms), newest first like the entries.
    ts: Vec<i64>,
    /// Each entry's tie (its place among rows of its millisecond).
    tie: Vec<u64>,
    /// The timestamp of the first row past the last entry, when the window holds one: the
    /// page's last view has a `next_cursor`.
    next_ts: Option<i64>,
    listing: Listing,
    /// Rows of its window can no longer arrive (CONTRACT.md §14): kept for
    /// `cache.settled_ttl_seconds`, sent as `immutable`, never refreshed by its newest rows.
    settled: bool,
    /// Where the first entry starts: the length of `{"app_id":...,"entries":[`.
    head: u32,
    /// The `limit` the query asked for.
    fetched_limit: u32,
    etag: HeaderValue,
    pub fetched_at: Instant,
    /// When the last full query behind this page ran (its own `fetched_at`, or that of the
    /// page a refresh merged into); `None` when unknown, which allows no merge.
    full_at: Option<Instant>,
    /// Compressed views made so far, by (entries in the view, coding): each is made once.
    encoded: Mutex<Vec<(usize, Coding, PageView)>>,
    /// Set when the page cache let go of the page (replaced, evicted, expired): a shortcut
    /// that still reaches it must not serve it.
    retired: AtomicBool,
    /// How often the cache found it for a request since it was fetched (hits through an
    /// actor's front are counted one in eight), plus half its predecessor's count: what
    /// makes it worth keeping against its tenant's other pages.
    uses: AtomicU32,
}

/// What one request gets out of a page: its body and the body's strong validator
/// (quoted, ready to send; cloning it copies nothing).
#[derive(Debug, Clone)]
pub struct PageView {
    pub body: Bytes,
    pub etag: HeaderValue,
}

impl Page {
    /// Marks the page as no longer the cache's.
    pub fn retire(&self) {
        self.retired.store(true, Ordering::Release);
    }

    pub fn is_retired(&self) -> bool {
        self.retired.load(Ordering::Acquire)
    }

    /// Counts one request the cache found this page for.
    pub fn note_use(&self) {
        self.uses.fetch_add(1, Ordering::Relaxed);
    }

    pub fn uses(&self) -> u32 {
        self.uses.load(Ordering::Relaxed)
    }

    /// A refreshed page starts with half of what the page it replaces was asked.
    pub fn inherit_uses(&self, old: &Page) {
        self.uses.fetch_add(old.uses() / 2, Ordering::Relaxed);
    }

    /// Whether this page holds the answer for `limit`: it holds as many entries, or the
    /// window holds no more.
    pub fn covers(&self, limit: u32) -> bool {
        limit as usize <= self.ends.len() || !self.is_full()
    }

    /// Whether the window holds rows past the last entry.
    pub fn is_full(&self) -> bool {
        self.next_ts.is_some()
    }

    pub fn is_settled(&self) -> bool {
        self.settled
    }

    pub fn listing(&self) -> &Listing {
        &self.listing
    }

    pub fn fetched_limit(&self) -> u32 {
        self.fetched_limit
    }

    pub fn len(&self) -> usize {
        self.ends.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ends.is_empty()
    }

    /// The newest entry's timestamp.
    pub fn newest_ms(&self) -> Option<i64> {
        self.ts.first().copied()
    }

    /// How many entries are at or after `ms` (they come first).
    pub fn count_since(&self, ms: i64) -> usize {
        self.ts.partition_point(|&t| t >= ms)
    }

    /// When the last full query behind this page ran.
    pub fn full_at(&self) -> Option<Instant> {
        self.full_at
    }

    /// The body for `limit` (which the page must cover): the whole page when it fits,
    /// else the first `limit` entries and their `next_cursor`, copied once.
    pub fn view(&self, limit: u32) -> PageView {
        let k = limit as usize;
        if k >= self.ends.len() {
            return PageView {
                body: self.body.clone(),
                etag: self.etag.clone(),
            };
        }
        let end = self.ends[k - 1] as usize;
        let cursor = next_cursor(&self.ts, &self.tie, k, true, &self.listing);
        let mut body = BytesMut::with_capacity(end + NEXT_CURSOR.len() + 80);
        body.put_slice(&self.body[..end]);
        close(&mut body, cursor.as_deref());
        PageView {
            etag: etag_of(&body),
            body: body.freeze(),
        }
    }

    /// The body for `limit` in `coding` (identity when `None`, or when the identity body is
    /// shorter than `min_bytes`), the coding used, and whether it was compressed just now.
    /// A compressed view is made once per (view, coding) and kept with the page.
    pub fn representation(
        &self,
        limit: u32,
        coding: Option<Coding>,
        min_bytes: usize,
    ) -> (PageView, Option<Coding>, bool) {
        let Some(coding) = coding else {
            return (self.view(limit), None, false);
        };
        let k = (limit as usize).min(self.ends.len());
        let mut encoded = self.encoded.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((_, _, view)) = encoded.iter().find(|(n, c, _)| *n == k && *c == coding) {
            return (view.clone(), Some(coding), false);
        }
        let identity = self.view(limit);
        if identity.body.len() < min_bytes {
            return (identity, None, false);
        }
        let view = PageView {
            body: coding.compress(&identity.body),
            etag: suffixed(&identity.etag, coding),
        };
        if encoded.len() < MAX_ENCODED {
            encoded.push((k, coding, view.clone()));
        }
        (view, Some(coding), true)
    }

    /// When this page's body is the same bytes as `older`'s (a refresh that found nothing
    /// new), takes over the compressed views `older` made, so none is made again.
    pub fn adopt_views(&self, older: &Page) {
        if self.body != older.body || std::ptr::eq(self, older) {
            return;
        }
        let views = older
            .encoded
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        *self.encoded.lock().unwrap_or_else(|e| e.into_inner()) = views;
    }

    /// A page of `body` as the builder or the fleet's form laid it out.
    fn assemble(
        body: Bytes,
        layout: Layout,
        fetched_at: Instant,
        full_at: Option<Instant>,
    ) -> Self {
        Page {
            etag: etag_of(&body),
            body,
            ends: layout.ends,
            ts: layout.ts,
            tie: layout.tie,
            next_ts: layout.next_ts,
            listing: layout.listing,
            settled: layout.settled,
            head: layout.head,
            fetched_limit: layout.fetched_limit,
            fetched_at,
            full_at,
            encoded: Mutex::new(Vec::new()),
            retired: AtomicBool::new(false),
            uses: AtomicU32::new(0),
        }
    }

    /// The bytes of entries `from..to` with the commas between them, and each entry's end
    /// relative to the start of that run.
    fn entries(&self, from: usize, to: usize) -> (&[u8], impl Iterator<Item = u32> + '_) {
        let start = match from {
            0 => self.head,
            i => self.ends[i - 1] + 1, // past the comma
        };
        let end = self.ends[to - 1];
        let ends = self.ends[from..to].iter().map(move |e| e - start);
        (&self.body[start as usize..end as usize], ends)
    }
}

/// Where a page's entries lie in its body and what follows them.
struct Layout {
    ends: Vec<u32>,
    ts: Vec<i64>,
    tie: Vec<u64>,
    next_ts: Option<i64>,
    listing: Listing,
    settled: bool,
    head: u32,
    fetched_limit: u32,
}

/// The `next_cursor` of the first `k` entries (of `ts` and `tie`), `more` telling whether
/// the window holds rows past entry `k - 1`: none when it does not. Its position counts the
/// exact copies of entry `k - 1` delivered so far (on this page, and before it when the
/// page starts with more of them).
fn next_cursor(ts: &[i64], tie: &[u64], k: usize, more: bool, listing: &Listing) -> Option<String> {
    if k == 0 || !more {
        return None;
    }
    let (last_ts, last_tie) = (ts[k - 1], tie[k - 1]);
    let run = ts[..k]
        .iter()
        .zip(&tie[..k])
        .rev()
        .take_while(|(t, h)| **t == last_ts && **h == last_tie)
        .count();
    let before = listing
        .after
        .filter(|p| run == k && p.ts == last_ts && p.tie == last_tie)
        .map_or(0, |p| p.dup);
    let cursor = Cursor {
        binding: listing.binding,
        window: listing.window,
        after: Position {
            ts: last_ts,
            tie: last_tie,
            dup: before.saturating_add(run as u32),
        },
    };
    Some(cursor.encode())
}

/// Ends the entries: `],"next_cursor":"<cursor>"}` or `],"next_cursor":null}`.
fn close(out: &mut BytesMut, cursor: Option<&str>) {
    out.put_slice(NEXT_CURSOR);
    match cursor {
        Some(c) => {
            out.put_u8(b'"');
            out.put_slice(c.as_bytes());
            out.put_u8(b'"');
        }
        None => out.put_slice(b"null"),
    }
    out.put_u8(b'}');
}

/// The ETag of a compressed representation: the identity body's, with the coding added
/// (`"<hash>.br"`), so it too depends only on the bytes.
fn suffixed(identity: &HeaderValue, coding: Coding) -> HeaderValue {
    let tag = identity.as_bytes();
    let text = format!(
        "{}.{}\"",
        String::from_utf8_lossy(&tag[..tag.len() - 1]),
        coding.name()
    );
    HeaderValue::from_maybe_shared(Bytes::from(text)).expect("hex digits, dots and quotes")
}

/// The strong validator of `body`: a hash of its bytes alone, so the same bytes have the
/// same ETag after a refresh, from a longer page's prefix, and on every process.
fn etag_of(body: &[u8]) -> HeaderValue {
    let text = format!("\"{:016x}\"", xxhash_rust::xxh3::xxh3_64(body));
    HeaderValue::from_maybe_shared(Bytes::from(text)).expect("hex digits and quotes")
}

#[cfg(test)]
mod tests;
