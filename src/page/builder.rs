//! `PageBuilder`: writes a page entry by entry as its query's rows arrive, and for a
//! refresh by the newest rows only, goes on with the older entries of the page it
//! refreshes, copied as they are.

use std::time::Instant;

use bytes::buf::Writer;
use bytes::{BufMut, Bytes, BytesMut};
use serde::Serialize;

use super::{close, next_cursor, Layout, Listing, Page};
use crate::clickhouse::rows::{LogSink, RequestRow, RuntimeRow};
use crate::domain::LogType;

pub struct PageBuilder {
    out: Writer<BytesMut>,
    ends: Vec<u32>,
    ts: Vec<i64>,
    tie: Vec<u64>,
    /// The first row past `limit` entries, when there was one.
    next_ts: Option<i64>,
    head: u32,
    limit: u32,
    listing: Listing,
    settled: bool,
    /// Rows at the listing's position still to pass over: the exact copies of its last
    /// entry that earlier pages delivered, which come first.
    skip: u32,
}

impl PageBuilder {
    /// A page of at most `limit` entries of `listing` (its rows are to be asked for with
    /// `rows_to_ask`).
    pub fn new(app_id: &str, log_type: LogType, limit: u32, listing: Listing) -> Self {
        let mut out = BytesMut::with_capacity(64 + limit.min(100) as usize * 256).writer();
        out.get_mut().put_slice(b"{\"app_id\":");
        json(&mut out, &app_id);
        out.get_mut().put_slice(b",\"log_type\":\"");
        out.get_mut().put_slice(log_type.as_str().as_bytes());
        out.get_mut().put_slice(b"\",\"entries\":[");
        let head = out.get_ref().len() as u32;
        Self {
            out,
            ends: Vec::with_capacity(limit.min(1000) as usize),
            ts: Vec::with_capacity(limit.min(1000) as usize),
            tie: Vec::with_capacity(limit.min(1000) as usize),
            next_ts: None,
            head,
            limit,
            skip: listing.after.map_or(0, |p| p.dup),
            listing,
            settled: false,
        }
    }

    /// Marks the page settled: its window's rows can no longer arrive.
    pub fn settled(mut self, settled: bool) -> Self {
        self.settled = settled;
        self
    }

    /// How many rows the query is to return: the page's, the copies at the position it
    /// passes over, and one more that tells whether the window goes on.
    pub fn rows_to_ask(&self) -> u32 {
        self.limit.saturating_add(self.skip).saturating_add(1)
    }

    /// Entries written so far.
    pub fn len(&self) -> usize {
        self.ends.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ends.is_empty()
    }

    fn push(&mut self, timestamp_ms: i64, tie: u64, entry: &impl Serialize) {
        if self.skip > 0 {
            match self.listing.after {
                Some(p) if p.ts == timestamp_ms && p.tie == tie => {
                    self.skip -= 1;
                    return;
                }
                _ => self.skip = 0,
            }
        }
        if self.ends.len() >= self.limit as usize {
            self.next_ts.get_or_insert(timestamp_ms);
            return;
        }
        if !self.ends.is_empty() {
            self.out.get_mut().put_u8(b',');
        }
        json(&mut self.out, entry);
        self.ends.push(self.out.get_ref().len() as u32);
        self.ts.push(timestamp_ms);
        self.tie.push(tie);
    }

    /// Goes on with `older`'s entries that are older than `before_ms` and not older than
    /// `since_ms`, as many as the limit leaves room for, copied byte for byte; the page goes
    /// on past them when `older` did (within `since_ms`) or when not all of them fitted.
    /// `older` must be a page of the same listing whose entries all come after the ones
    /// written.
    pub fn extend_older(&mut self, older: &Page, before_ms: i64, since_ms: i64) {
        let from = older.count_since(before_ms);
        let room = (self.limit as usize).saturating_sub(self.ends.len());
        let inside = older.count_since(since_ms);
        let to = inside.min(from + room).max(from);
        if self.next_ts.is_none() {
            self.next_ts = match to < inside {
                true => Some(older.ts[to]),
                false => older.next_ts.filter(|&t| t >= since_ms),
            };
        }
        if to <= from {
            return;
        }
        if !self.ends.is_empty() {
            self.out.get_mut().put_u8(b',');
        }
        let at = self.out.get_ref().len() as u32;
        let (bytes, ends) = older.entries(from, to);
        self.out.get_mut().put_slice(bytes);
        self.ends.extend(ends.map(|e| at + e));
        self.ts.extend_from_slice(&older.ts[from..to]);
        self.tie.extend_from_slice(&older.tie[from..to]);
    }

    /// Whether the entries written so far, and whether the window goes on past them, are
    /// `page`'s.
    pub fn same_entries_as(&self, page: &Page) -> bool {
        let written = &self.out.get_ref()[self.head as usize..];
        let held = match page.ends.last() {
            Some(&end) => &page.body[page.head as usize..end as usize],
            None => &[],
        };
        written == held && self.next_ts.is_some() == page.next_ts.is_some()
    }

    /// Takes `listing` for the page's cursors instead of its own.
    pub fn keep_listing(&mut self, listing: Listing) {
        self.listing = listing;
    }

    /// The page of a full query, run at `fetched_at`.
    pub fn finish(self, fetched_at: Instant) -> Page {
        self.finish_merged(fetched_at, Some(fetched_at))
    }

    /// The page, fetched at `fetched_at`, whose older entries came from a full query run at
    /// `full_at`.
    pub fn finish_merged(mut self, fetched_at: Instant, full_at: Option<Instant>) -> Page {
        let more = self.next_ts.is_some();
        let cursor = next_cursor(&self.ts, &self.tie, self.ends.len(), more, &self.listing);
        close(self.out.get_mut(), cursor.as_deref());
        // An exact-size copy: the cache weighs a page by its length, and a buffer sized for
        // `limit` entries would hold far more memory than a short page's length says.
        let body = Bytes::copy_from_slice(self.out.get_ref());
        self.ends.shrink_to_fit();
        self.ts.shrink_to_fit();
        self.tie.shrink_to_fit();
        let layout = Layout {
            ends: self.ends,
            ts: self.ts,
            tie: self.tie,
            next_ts: self.next_ts,
            listing: self.listing,
            settled: self.settled,
            head: self.head,
            fetched_limit: self.limit,
        };
        Page::assemble(body, layout, fetched_at, full_at)
    }
}

impl LogSink for PageBuilder {
    fn entry(&mut self, timestamp_ms: i64, tie: u64, entry: &impl Serialize) {
        self.push(timestamp_ms, tie, entry);
    }
}

/// Serializing plain strings and numbers into memory cannot fail.
fn json(out: &mut Writer<BytesMut>, value: &impl Serialize) {
    serde_json::to_writer(out, value).expect("serializing to memory");
}

impl Page {
    /// A page of owned rows (seeded or inserted ones) of the last hour, as a query would
    /// have built it from them (`rows` in the query's order; one past `limit` tells that
    /// the window goes on).
    pub fn from_runtime(app_id: &str, rows: &[RuntimeRow], limit: u32, now: Instant) -> Self {
        let mut page = PageBuilder::new(app_id, LogType::Runtime, limit, Listing::recent(app_id));
        for r in rows {
            let e = r.as_entry();
            page.entry(r.timestamp_ms, e.tie, &e);
        }
        page.finish(now)
    }

    /// As `from_runtime`, for request rows.
    pub fn from_requests(app_id: &str, rows: &[RequestRow], limit: u32, now: Instant) -> Self {
        let mut page = PageBuilder::new(app_id, LogType::Requests, limit, Listing::recent(app_id));
        for r in rows {
            let e = r.as_entry();
            page.entry(r.timestamp_ms, e.tie, &e);
        }
        page.finish(now)
    }
}

impl Listing {
    /// The listing of all of an app's runtime rows, without a level: what a page of owned
    /// rows is taken to be.
    pub fn recent(app_id: &str) -> Self {
        Listing {
            binding: crate::domain::binding(app_id, LogType::Runtime, None),
            window: crate::domain::Window {
                start_ms: 0,
                end_ms: None,
            },
            after: None,
        }
    }
}
