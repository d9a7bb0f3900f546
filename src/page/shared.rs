//! A page as the fleet shares it in Redis (CONTRACT.md §7): byte-exact, with what a proxy
//! needs to slice it and to refresh it by its newest rows.

use std::time::{Duration, Instant};

use bytes::Bytes;

use super::{Page, CLOSE};

/// The form's tag and version; a value without it is not a page of this form.
const MAGIC: &[u8; 4] = b"LPG2";
/// `full_age_ms` of a page whose last full query is unknown.
const UNKNOWN: u64 = u64::MAX;

impl Page {
    /// `LPG2`, the `limit` it was fetched with, the entry count, where the entries start,
    /// how long before it was fetched its last full query ran (ms), every entry's end offset
    /// and timestamp, then the body. Compressed views stay local.
    pub fn to_shared(&self) -> Vec<u8> {
        let n = self.ends.len();
        let mut out = Vec::with_capacity(24 + n * 12 + self.body.len());
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&self.fetched_limit.to_le_bytes());
        out.extend_from_slice(&(n as u32).to_le_bytes());
        out.extend_from_slice(&self.head.to_le_bytes());
        let full_age = self.full_at.map_or(UNKNOWN, |at| {
            self.fetched_at.saturating_duration_since(at).as_millis() as u64
        });
        out.extend_from_slice(&full_age.to_le_bytes());
        for end in &self.ends {
            out.extend_from_slice(&end.to_le_bytes());
        }
        for ts in &self.ts {
            out.extend_from_slice(&ts.to_le_bytes());
        }
        out.extend_from_slice(&self.body);
        out
    }

    /// A page another proxy shared, `fetched_at` being when it was fetched on this process's
    /// clock; `None` when the bytes are not a page (another version, or damaged).
    pub fn from_shared(bytes: Bytes, fetched_at: Instant) -> Option<Self> {
        let at = |from: usize, len: usize| bytes.get(from..from.checked_add(len)?);
        let word = |from: usize| Some(u32::from_le_bytes(at(from, 4)?.try_into().ok()?));
        let long = |from: usize| Some(u64::from_le_bytes(at(from, 8)?.try_into().ok()?));
        if at(0, 4)? != MAGIC {
            return None;
        }
        let fetched_limit = word(4)?;
        let count = word(8)? as usize;
        let head = word(12)?;
        let full_age = long(16)?;
        let ends_at = 24;
        let ts_at = ends_at + count.checked_mul(4)?;
        let body_at = ts_at.checked_add(count.checked_mul(8)?)?;
        let ends: Vec<u32> = (0..count)
            .map(|i| word(ends_at + i * 4))
            .collect::<Option<_>>()?;
        let ts: Vec<i64> = (0..count)
            .map(|i| long(ts_at + i * 8).map(|t| t as i64))
            .collect::<Option<_>>()?;
        let body = bytes.slice(body_at.min(bytes.len())..);
        let ordered = ends.windows(2).all(|w| w[0] < w[1]) && ts.windows(2).all(|w| w[0] >= w[1]);
        let inside = head as usize <= body.len()
            && ends.first().is_none_or(|&first| first > head)
            && ends
                .last()
                .is_none_or(|&end| end as usize + CLOSE.len() <= body.len());
        if body_at > bytes.len() || !ordered || !inside || !body.ends_with(CLOSE) {
            return None;
        }
        let full_at = match full_age {
            UNKNOWN => None,
            ms => fetched_at.checked_sub(Duration::from_millis(ms)),
        };
        Some(Page::assemble(
            body,
            ends,
            ts,
            head,
            fetched_limit,
            fetched_at,
            full_at,
        ))
    }
}
