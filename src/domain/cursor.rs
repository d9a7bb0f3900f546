//! Paging through time (CONTRACT.md §14): a listing's window, a page's position in the total
//! order of §11, and the cursor that carries both from one page to the next: opaque,
//! URL-safe, self-checking, the same on every process (no secret of its own).

use std::hash::Hasher as _;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;

use super::log_type::LogType;

/// The longest window a request may ask for, in ms (168 hours, as `hours`).
pub const MAX_WINDOW_MS: i64 = 168 * 3_600_000;

/// A listing's time bounds: `[start_ms, end_ms)`, no upper bound when `end_ms` is `None` (a
/// window that reaches now, whose newest rows a refresh may add).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Window {
    pub start_ms: i64,
    pub end_ms: Option<i64>,
}

/// Where a page ended in the order of §11 (newest first; ties by `tie`, ClickHouse's
/// `sipHash64` of the other columns, then the columns): the last entry's timestamp and tie,
/// and how many entries with both exactly these (exact copies of one row) were delivered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Position {
    pub ts: i64,
    pub tie: u64,
    pub dup: u32,
}

/// What a cursor names besides its window and position: the app, `log_type` and `level` of
/// its listing, as one hash (a cursor of another listing is refused).
pub fn binding(app_id: &str, log_type: LogType, level: Option<&str>) -> u64 {
    let mut h = siphasher::sip::SipHasher24::new_with_keys(0x6c70_6375_7273_6f72, 1);
    h.write(app_id.as_bytes());
    h.write_u8(0);
    h.write(log_type.as_str().as_bytes());
    h.write_u8(0);
    h.write(level.unwrap_or("").as_bytes());
    h.finish()
}

/// A decoded cursor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cursor {
    pub binding: u64,
    pub window: Window,
    pub after: Position,
}

const VERSION: u8 = 1;

impl Cursor {
    /// URL-safe base64 (no padding) of: version, flags, binding, start, [end], position,
    /// and a check over all of it: at most 71 characters.
    pub fn encode(&self) -> String {
        let mut out = Vec::with_capacity(56);
        out.push(VERSION);
        out.push(u8::from(self.window.end_ms.is_some()));
        out.extend_from_slice(&self.binding.to_le_bytes());
        out.extend_from_slice(&self.window.start_ms.to_le_bytes());
        if let Some(end) = self.window.end_ms {
            out.extend_from_slice(&end.to_le_bytes());
        }
        out.extend_from_slice(&self.after.ts.to_le_bytes());
        out.extend_from_slice(&self.after.tie.to_le_bytes());
        out.extend_from_slice(&self.after.dup.to_le_bytes());
        let check = check(&out);
        out.extend_from_slice(&check.to_le_bytes());
        URL_SAFE_NO_PAD.encode(out)
    }

    /// The cursor `text` encodes; `None` when it is not one (altered, cut, another version).
    pub fn decode(text: &str) -> Option<Cursor> {
        if text.len() > 256 {
            return None;
        }
        let bytes = URL_SAFE_NO_PAD.decode(text).ok()?;
        let (body, sum) = bytes.split_at_checked(bytes.len().checked_sub(4)?)?;
        if check(body).to_le_bytes() != sum || body.first() != Some(&VERSION) {
            return None;
        }
        let mut at = 2;
        let mut take = |n: usize| {
            let field = body.get(at..at + n)?;
            at += n;
            Some(field)
        };
        let long = |b: &[u8]| u64::from_le_bytes(b.try_into().expect("8 bytes"));
        let has_end = match body.get(1)? {
            0 => false,
            1 => true,
            _ => return None,
        };
        let binding = long(take(8)?);
        let start_ms = long(take(8)?) as i64;
        let end_ms = match has_end {
            true => Some(long(take(8)?) as i64),
            false => None,
        };
        let ts = long(take(8)?) as i64;
        let tie = long(take(8)?);
        let dup = u32::from_le_bytes(take(4)?.try_into().expect("4 bytes"));
        if at != body.len() {
            return None;
        }
        Some(Cursor {
            binding,
            window: Window { start_ms, end_ms },
            after: Position { ts, tie, dup },
        })
    }
}

/// 32 bits of SipHash over the cursor's bytes: an altered cursor is refused, not read as
/// another page.
fn check(bytes: &[u8]) -> u32 {
    let mut h = siphasher::sip::SipHasher24::new_with_keys(0x6375_7273_6f72_2d63, 2);
    h.write(bytes);
    h.finish() as u32
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cursor(end_ms: Option<i64>) -> Cursor {
        Cursor {
            binding: binding("app", LogType::Runtime, Some("warn")),
            window: Window {
                start_ms: 1_700_000_000_000,
                end_ms,
            },
            after: Position {
                ts: 1_700_000_123_456,
                tie: u64::MAX - 7,
                dup: 2,
            },
        }
    }

    #[test]
    fn a_cursor_reads_back_as_it_was_written_in_url_safe_text() {
        for c in [cursor(None), cursor(Some(1_700_003_600_000))] {
            let text = c.encode();
            assert!(text.len() <= 256, "{}", text.len());
            assert!(text
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'));
            assert_eq!(Cursor::decode(&text), Some(c));
        }
    }

    #[test]
    fn an_altered_cut_or_foreign_cursor_is_refused() {
        let text = cursor(Some(5)).encode();
        for i in 0..text.len() {
            let mut bytes = text.clone().into_bytes();
            bytes[i] = if bytes[i] == b'A' { b'B' } else { b'A' };
            let altered = String::from_utf8(bytes).unwrap();
            assert_eq!(Cursor::decode(&altered), None, "byte {i} altered");
        }
        assert_eq!(Cursor::decode(&text[..text.len() - 1]), None);
        assert_eq!(Cursor::decode(""), None);
        assert_eq!(Cursor::decode("not a cursor!"), None);
        assert_eq!(Cursor::decode(&"A".repeat(300)), None);
        let other = binding("app", LogType::Runtime, None);
        assert_ne!(cursor(None).binding, other, "level is bound");
        assert_ne!(
            binding("app", LogType::Requests, None),
            binding("app2", LogType::Requests, None)
        );
    }
}
