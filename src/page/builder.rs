//! `PageBuilder`: writes a page entry by entry as its query's rows arrive, and for a
//! refresh by the newest rows only, goes on with the older entries of the page it
//! refreshes, copied as they are.

use std::time::Instant;

use bytes::buf::Writer;
use bytes::{BufMut, Bytes, BytesMut};
use serde::Serialize;

use super::{Page, CLOSE};
use crate::clickhouse::rows::{LogSink, RequestRow, RuntimeRow};
use crate::domain::LogType;

pub struct PageBuilder {
    out: Writer<BytesMut>,
    ends: Vec<u32>,
    ts: Vec<i64>,
    head: u32,
    limit: u32,
}

impl PageBuilder {
    pub fn new(app_id: &str, log_type: LogType, limit: u32) -> Self {
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
            head,
            limit,
        }
    }

    /// Entries written so far.
    pub fn len(&self) -> usize {
        self.ends.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ends.is_empty()
    }

    fn push(&mut self, timestamp_ms: i64, entry: &impl Serialize) {
        if !self.ends.is_empty() {
            self.out.get_mut().put_u8(b',');
        }
        json(&mut self.out, entry);
        self.ends.push(self.out.get_ref().len() as u32);
        self.ts.push(timestamp_ms);
    }

    /// Goes on with `older`'s entries that are older than `before_ms` and not older than
    /// `since_ms`, as many as the limit leaves room for, copied byte for byte. `older` must
    /// be a page of the same app and log type whose entries all come after the ones written.
    pub fn extend_older(&mut self, older: &Page, before_ms: i64, since_ms: i64) {
        let from = older.count_since(before_ms);
        let room = (self.limit as usize).saturating_sub(self.ends.len());
        let to = older.count_since(since_ms).min(from + room);
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
    }

    /// The page of a full query, run at `fetched_at`.
    pub fn finish(self, fetched_at: Instant) -> Page {
        self.finish_merged(fetched_at, Some(fetched_at))
    }

    /// The page, fetched at `fetched_at`, whose older entries came from a full query run at
    /// `full_at`.
    pub fn finish_merged(mut self, fetched_at: Instant, full_at: Option<Instant>) -> Page {
        self.out.get_mut().put_slice(CLOSE);
        // An exact-size copy: the cache weighs a page by its length, and a buffer sized for
        // `limit` entries would hold far more memory than a short page's length says.
        let body = Bytes::copy_from_slice(self.out.get_ref());
        self.ends.shrink_to_fit();
        self.ts.shrink_to_fit();
        Page::assemble(
            body, self.ends, self.ts, self.head, self.limit, fetched_at, full_at,
        )
    }
}

impl LogSink for PageBuilder {
    fn entry(&mut self, timestamp_ms: i64, entry: &impl Serialize) {
        self.push(timestamp_ms, entry);
    }
}

/// Serializing plain strings and numbers into memory cannot fail.
fn json(out: &mut Writer<BytesMut>, value: &impl Serialize) {
    serde_json::to_writer(out, value).expect("serializing to memory");
}

impl Page {
    /// A page of owned rows (seeded or inserted ones), as a query would have built it.
    pub fn from_runtime(app_id: &str, rows: &[RuntimeRow], limit: u32, now: Instant) -> Self {
        let mut page = PageBuilder::new(app_id, LogType::Runtime, limit);
        rows.iter()
            .for_each(|r| page.entry(r.timestamp_ms, &r.as_entry()));
        page.finish(now)
    }

    /// As `from_runtime`, for request rows.
    pub fn from_requests(app_id: &str, rows: &[RequestRow], limit: u32, now: Instant) -> Self {
        let mut page = PageBuilder::new(app_id, LogType::Requests, limit);
        rows.iter()
            .for_each(|r| page.entry(r.timestamp_ms, &r.as_entry()));
        page.finish(now)
    }
}
