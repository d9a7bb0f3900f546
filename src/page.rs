//! `Page`: a ready 200 body with the end offset of every entry, so one fetched page answers
//! any smaller `limit` by slicing, without serializing again.

use std::time::Instant;

use actix_web::http::header::HeaderValue;
use bytes::buf::Writer;
use bytes::{BufMut, Bytes, BytesMut};
use serde::Serialize;

use crate::clickhouse::rows::{LogSink, RequestRow, RuntimeRow};
use crate::domain::LogType;

/// `message` is cut to this many characters (not bytes).
pub const MESSAGE_MAX_CHARS: usize = 2000;

const CLOSE: &[u8] = b"]}";

#[derive(Debug)]
pub struct Page {
    body: Bytes,
    /// End offset (exclusive) of each entry inside `body`.
    ends: Vec<u32>,
    /// The `limit` the query asked for.
    fetched_limit: u32,
    etag: HeaderValue,
    pub fetched_at: Instant,
}

/// What one request gets out of a page: its body and the body's strong validator
/// (quoted, ready to send; cloning it copies nothing).
#[derive(Debug, Clone)]
pub struct PageView {
    pub body: Bytes,
    pub etag: HeaderValue,
}

/// Writes a page entry by entry, as the rows of its query arrive.
pub struct PageBuilder {
    out: Writer<BytesMut>,
    ends: Vec<u32>,
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
        Self {
            out,
            ends: Vec::with_capacity(limit.min(1000) as usize),
            limit,
        }
    }

    fn push(&mut self, entry: &impl Serialize) {
        if !self.ends.is_empty() {
            self.out.get_mut().put_u8(b',');
        }
        json(&mut self.out, entry);
        self.ends.push(self.out.get_ref().len() as u32);
    }

    pub fn finish(mut self, fetched_at: Instant) -> Page {
        self.out.get_mut().put_slice(CLOSE);
        // An exact-size copy: the cache weighs a page by its length, and a buffer sized for
        // `limit` entries would hold far more memory than a short page's length says.
        let body = Bytes::copy_from_slice(self.out.get_ref());
        self.ends.shrink_to_fit();
        Page {
            etag: etag_of(&body),
            body,
            ends: self.ends,
            fetched_limit: self.limit,
            fetched_at,
        }
    }
}

impl LogSink for PageBuilder {
    fn entry(&mut self, entry: &impl Serialize) {
        self.push(entry);
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
        rows.iter().for_each(|r| page.entry(&r.as_entry()));
        page.finish(now)
    }

    /// As `from_runtime`, for request rows.
    pub fn from_requests(app_id: &str, rows: &[RequestRow], limit: u32, now: Instant) -> Self {
        let mut page = PageBuilder::new(app_id, LogType::Requests, limit);
        rows.iter().for_each(|r| page.entry(&r.as_entry()));
        page.finish(now)
    }

    /// Whether this page holds the answer for `limit`: it asked for at least as many rows,
    /// or it got fewer than it asked for, which means the window holds no more.
    pub fn covers(&self, limit: u32) -> bool {
        limit <= self.fetched_limit || self.ends.len() < self.fetched_limit as usize
    }

    /// The body for `limit` (which the page must cover): the whole page when it fits,
    /// else the first `limit` entries, copied once.
    pub fn view(&self, limit: u32) -> PageView {
        let k = limit as usize;
        if k >= self.ends.len() {
            return PageView {
                body: self.body.clone(),
                etag: self.etag.clone(),
            };
        }
        let end = self.ends[k - 1] as usize;
        let mut body = BytesMut::with_capacity(end + CLOSE.len());
        body.put_slice(&self.body[..end]);
        body.put_slice(CLOSE);
        PageView {
            etag: etag_of(&body),
            body: body.freeze(),
        }
    }

    /// Bytes this page holds, as the cache weighs it.
    pub fn weight(&self) -> usize {
        self.body.len() + self.ends.len() * 4 + self.etag.len() + std::mem::size_of::<Self>()
    }
}

/// The strong validator of `body`: a hash of its bytes alone, so the same bytes have the
/// same ETag after a refresh, from a longer page's prefix, and on every process.
fn etag_of(body: &[u8]) -> HeaderValue {
    let text = format!("\"{:016x}\"", xxhash_rust::xxh3::xxh3_64(body));
    HeaderValue::from_maybe_shared(Bytes::from(text)).expect("hex digits and quotes")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    fn row(ts: i64, message: &str) -> RuntimeRow {
        RuntimeRow {
            app_id: "a".into(),
            timestamp_ms: ts,
            level: "info".into(),
            message: message.into(),
            route_path: "/x".into(),
            request_id: "r".into(),
        }
    }

    fn page(n: i64, limit: u32) -> Page {
        let rows: Vec<_> = (0..n).map(|i| row(1_764_340_548_123 - i, "m")).collect();
        Page::from_runtime("a\"pp", &rows, limit, Instant::now())
    }

    #[test]
    fn a_page_is_the_contract_body_with_millisecond_utc_timestamps() {
        let body: Value = serde_json::from_slice(&page(2, 10).view(10).body).unwrap();
        assert_eq!(body["app_id"], "a\"pp");
        assert_eq!(body["log_type"], "runtime");
        assert_eq!(body["entries"][0]["timestamp"], "2025-11-28T14:35:48.123Z");
        assert_eq!(body["entries"][1]["timestamp"], "2025-11-28T14:35:48.122Z");
        assert_eq!(body["entries"].as_array().unwrap().len(), 2);
    }

    #[test]
    fn every_prefix_is_valid_json_with_its_own_etag() {
        let p = page(5, 5);
        let full = p.view(5);
        for k in 1..5u32 {
            let v = p.view(k);
            let body: Value = serde_json::from_slice(&v.body).unwrap();
            assert_eq!(body["entries"].as_array().unwrap().len(), k as usize);
            assert_ne!(v.etag, full.etag);
        }
        assert_eq!(
            p.view(1000).etag,
            full.etag,
            "a complete page answers larger limits"
        );
    }

    #[test]
    fn the_etag_comes_from_the_bytes_whichever_page_they_were_cut_from() {
        let rows: Vec<_> = (0..50).map(|i| row(1_764_340_548_123 - i, "m")).collect();
        let long = Page::from_runtime("a", &rows, 100, Instant::now());
        let short = Page::from_runtime("a", &rows[..5], 5, Instant::now());
        assert_eq!(long.view(5).body, short.view(5).body);
        assert_eq!(long.view(5).etag, short.view(5).etag);
        let refreshed = Page::from_runtime("a", &rows, 100, Instant::now());
        assert_eq!(refreshed.view(100).etag, long.view(100).etag);
    }

    #[test]
    fn a_full_page_covers_only_smaller_limits_and_a_short_page_covers_all() {
        assert!(page(5, 5).covers(5) && page(5, 5).covers(1) && !page(5, 5).covers(6));
        assert!(page(3, 5).covers(1000));
        assert!(page(0, 5).covers(1000));
    }

    #[test]
    fn messages_are_cut_to_2000_characters_not_bytes() {
        let long = "é".repeat(2500);
        let p = Page::from_runtime("a", &[row(0, &long)], 1, Instant::now());
        let body: Value = serde_json::from_slice(&p.view(1).body).unwrap();
        let msg = body["entries"][0]["message"].as_str().unwrap();
        assert_eq!(msg.chars().count(), 2000);
        assert_eq!(crate::clickhouse::rows::cut_chars("abc", 2000), "abc");
    }
}
