//! A page as the fleet shares it in Redis (CONTRACT.md §7): byte-exact, with what a proxy
//! needs to slice it (with each slice's `next_cursor`) and to refresh it by its newest rows.

use std::time::{Duration, Instant};

use bytes::Bytes;

use super::{Layout, Listing, Page};
use crate::domain::{Position, Window};

/// The form's tag and version; a value without it is not a page of this form.
const MAGIC: &[u8; 4] = b"LPG3";
/// `full_age_ms` of a page whose last full query is unknown.
const UNKNOWN: u64 = u64::MAX;
/// An absent `i64` (`next_ts`, the window's end).
const NONE: i64 = i64::MIN;
/// The fixed part before the entries' arrays.
const HEADER: usize = 78;

impl Page {
    /// `LPG3`, the `limit` it was fetched with, the entry count, where the entries start,
    /// how long before it was fetched its last full query ran (ms), the next row's
    /// timestamp, the listing (binding, window, position) and whether it is settled, every
    /// entry's end offset, timestamp and tie, then the body. Compressed views stay local.
    pub fn to_shared(&self) -> Vec<u8> {
        let n = self.ends.len();
        let mut out = Vec::with_capacity(HEADER + n * 20 + self.body.len());
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&self.fetched_limit.to_le_bytes());
        out.extend_from_slice(&(n as u32).to_le_bytes());
        out.extend_from_slice(&self.head.to_le_bytes());
        let full_age = self.full_at.map_or(UNKNOWN, |at| {
            self.fetched_at.saturating_duration_since(at).as_millis() as u64
        });
        out.extend_from_slice(&full_age.to_le_bytes());
        out.extend_from_slice(&self.next_ts.unwrap_or(NONE).to_le_bytes());
        let l = &self.listing;
        out.extend_from_slice(&l.binding.to_le_bytes());
        out.extend_from_slice(&l.window.start_ms.to_le_bytes());
        out.extend_from_slice(&l.window.end_ms.unwrap_or(NONE).to_le_bytes());
        out.push(u8::from(l.after.is_some()));
        let after = l.after.unwrap_or(Position {
            ts: 0,
            tie: 0,
            dup: 0,
        });
        out.extend_from_slice(&after.ts.to_le_bytes());
        out.extend_from_slice(&after.tie.to_le_bytes());
        out.extend_from_slice(&after.dup.to_le_bytes());
        out.push(u8::from(self.settled));
        debug_assert_eq!(out.len(), HEADER);
        for end in &self.ends {
            out.extend_from_slice(&end.to_le_bytes());
        }
        for ts in &self.ts {
            out.extend_from_slice(&ts.to_le_bytes());
        }
        for tie in &self.tie {
            out.extend_from_slice(&tie.to_le_bytes());
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
        let byte = |from: usize| at(from, 1).map(|b| b[0]);
        let maybe = |v: u64| Some(v as i64).filter(|&v| v != NONE);
        if at(0, 4)? != MAGIC {
            return None;
        }
        let fetched_limit = word(4)?;
        let count = word(8)? as usize;
        let head = word(12)?;
        let full_age = long(16)?;
        let next_ts = maybe(long(24)?);
        let window = Window {
            start_ms: long(40)? as i64,
            end_ms: maybe(long(48)?),
        };
        let after = match byte(56)? {
            0 => None,
            1 => Some(Position {
                ts: long(57)? as i64,
                tie: long(65)?,
                dup: word(73)?,
            }),
            _ => return None,
        };
        let listing = Listing {
            binding: long(32)?,
            window,
            after,
        };
        let settled = byte(HEADER - 1)? == 1;
        let ts_at = HEADER + count.checked_mul(4)?;
        let tie_at = ts_at.checked_add(count.checked_mul(8)?)?;
        let body_at = tie_at.checked_add(count.checked_mul(8)?)?;
        let ends: Vec<u32> = (0..count)
            .map(|i| word(HEADER + i * 4))
            .collect::<Option<_>>()?;
        let ts: Vec<i64> = (0..count)
            .map(|i| long(ts_at + i * 8).map(|t| t as i64))
            .collect::<Option<_>>()?;
        let tie: Vec<u64> = (0..count)
            .map(|i| long(tie_at + i * 8))
            .collect::<Option<_>>()?;
        let body = bytes.slice(body_at.min(bytes.len())..);
        let ordered = ends.windows(2).all(|w| w[0] < w[1]) && ts.windows(2).all(|w| w[0] >= w[1]);
        let inside = head as usize <= body.len()
            && ends.first().is_none_or(|&first| first > head)
            && ends
                .last()
                .is_none_or(|&end| end as usize + super::NEXT_CURSOR.len() < body.len());
        if body_at > bytes.len() || !ordered || !inside || !body.ends_with(b"}") {
            return None;
        }
        let full_at = match full_age {
            UNKNOWN => None,
            ms => fetched_at.checked_sub(Duration::from_millis(ms)),
        };
        let layout = Layout {
            ends,
            ts,
            tie,
            next_ts,
            listing,
            settled,
            head,
            fetched_limit,
        };
        Some(Page::assemble(body, layout, fetched_at, full_at))
    }
}
