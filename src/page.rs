//! `Page`: a ready 200 body with the end offset of every entry, so one fetched page answers
//! any smaller `limit` by slicing, without serializing again.

use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::Mutex;
use std::time::Instant;

use actix_web::http::header::HeaderValue;
use bytes::buf::Writer;
use bytes::{BufMut, Bytes, BytesMut};
use serde::Serialize;

use crate::clickhouse::rows::{LogSink, RequestRow, RuntimeRow};
use crate::domain::LogType;
use crate::encoding::Coding;

/// `message` is cut to this many characters (not bytes).
pub const MESSAGE_MAX_CHARS: usize = 2000;

const CLOSE: &[u8] = b"]}";

/// At most this many compressed views are kept per page (a view per limit and coding).
const MAX_ENCODED: usize = 12;

#[derive(Debug)]
pub struct Page {
    body: Bytes,
    /// End offset (exclusive) of each entry inside `body`.
    ends: Vec<u32>,
    /// The `limit` the query asked for.
    fetched_limit: u32,
    etag: HeaderValue,
    pub fetched_at: Instant,
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
            encoded: Mutex::new(Vec::new()),
            retired: AtomicBool::new(false),
            uses: AtomicU32::new(0),
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

    /// Marks the page as no longer the cache's (`retired: false` takes that back).
    pub fn set_retired(&self, retired: bool) {
        self.retired.store(retired, Ordering::Release);
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

    /// The page as the fleet shares it (CONTRACT.md §7): the `limit` it was fetched with,
    /// every entry's end offset, then the byte-exact body. Compressed views stay local.
    pub fn to_shared(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(8 + self.ends.len() * 4 + self.body.len());
        out.extend_from_slice(&self.fetched_limit.to_le_bytes());
        out.extend_from_slice(&(self.ends.len() as u32).to_le_bytes());
        for end in &self.ends {
            out.extend_from_slice(&end.to_le_bytes());
        }
        out.extend_from_slice(&self.body);
        out
    }

    /// A page another proxy shared, `fetched_at` being when it was fetched on this process's
    /// clock; `None` when the bytes are not a page (another version, or damaged).
    pub fn from_shared(bytes: Bytes, fetched_at: Instant) -> Option<Self> {
        let word = |at: usize| -> Option<u32> {
            Some(u32::from_le_bytes(bytes.get(at..at + 4)?.try_into().ok()?))
        };
        let fetched_limit = word(0)?;
        let count = word(4)? as usize;
        let body_at = 8usize.checked_add(count.checked_mul(4)?)?;
        let ends: Vec<u32> = (0..count).map(|i| word(8 + i * 4)).collect::<Option<_>>()?;
        let body = bytes.slice(body_at.min(bytes.len())..);
        let ordered = ends.windows(2).all(|w| w[0] < w[1]);
        let inside = ends
            .last()
            .is_none_or(|&end| end as usize + CLOSE.len() <= body.len());
        if body_at > bytes.len() || !ordered || !inside || !body.ends_with(CLOSE) {
            return None;
        }
        Some(Page {
            etag: etag_of(&body),
            body,
            ends,
            fetched_limit,
            fetched_at,
            encoded: Mutex::new(Vec::new()),
            retired: AtomicBool::new(false),
            uses: AtomicU32::new(0),
        })
    }

    /// Bytes this page holds, compressed views included, as the cache weighs it.
    pub fn weight(&self) -> usize {
        let encoded = self.encoded.lock().unwrap_or_else(|e| e.into_inner());
        let compressed: usize = encoded
            .iter()
            .map(|(_, _, v)| v.body.len() + v.etag.len())
            .sum();
        self.body.len()
            + self.ends.len() * 4
            + self.etag.len()
            + compressed
            + std::mem::size_of::<Self>()
    }
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
    fn a_compressed_view_is_made_once_counted_in_the_weight_and_tagged_per_coding() {
        let p = page(50, 50);
        let plain = p.weight();
        let (gz, coding, made) = p.representation(50, Some(Coding::Gzip), 1024);
        assert_eq!((coding, made), (Some(Coding::Gzip), true));
        assert!(
            p.weight() >= plain + gz.body.len(),
            "compressed bytes are weighed"
        );
        let (again, _, made_again) = p.representation(50, Some(Coding::Gzip), 1024);
        assert!(!made_again, "a second hit reuses it");
        assert_eq!(again.body, gz.body);
        let identity = p.view(50).etag;
        assert_ne!(gz.etag, identity);
        let id = identity.to_str().unwrap().trim_matches('"');
        assert_eq!(gz.etag.to_str().unwrap(), format!("\"{id}.gzip\""));
        let (br, _, _) = p.representation(5, Some(Coding::Br), 1024);
        assert_ne!(br.etag, gz.etag);
        let (small, coding, _) = p.representation(1, Some(Coding::Zstd), 1024);
        assert_eq!(
            (coding, small.body),
            (None, p.view(1).body),
            "under min_bytes: identity"
        );
    }

    #[test]
    fn a_full_page_covers_only_smaller_limits_and_a_short_page_covers_all() {
        assert!(page(5, 5).covers(5) && page(5, 5).covers(1) && !page(5, 5).covers(6));
        assert!(page(3, 5).covers(1000));
        assert!(page(0, 5).covers(1000));
    }

    #[test]
    fn a_shared_page_comes_back_byte_exact_and_damaged_bytes_are_refused() {
        let p = page(5, 5);
        let shared = Bytes::from(p.to_shared());
        let back = Page::from_shared(shared.clone(), p.fetched_at).unwrap();
        for k in [1, 3, 5, 1000] {
            assert_eq!(back.view(k).body, p.view(k).body);
            assert_eq!(back.view(k).etag, p.view(k).etag);
            assert_eq!(back.covers(k), p.covers(k));
        }
        assert!(Page::from_shared(shared.slice(..shared.len() - 1), p.fetched_at).is_none());
        assert!(Page::from_shared(shared.slice(..6), p.fetched_at).is_none());
        assert!(Page::from_shared(Bytes::from_static(b"garbage!"), p.fetched_at).is_none());
        let empty = page(0, 5);
        let back = Page::from_shared(Bytes::from(empty.to_shared()), empty.fetched_at).unwrap();
        assert_eq!(back.view(5).body, empty.view(5).body);
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
