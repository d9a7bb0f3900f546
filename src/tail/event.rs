//! What a tail stream sends (CONTRACT.md §15), as Server-Sent Events frames, and the event
//! id that `Last-Event-ID` brings back: opaque, URL-safe, self-checking.

use std::hash::Hasher as _;
use std::ops::Range;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use bytes::{BufMut as _, Bytes, BytesMut};
use serde::Serialize;

use crate::clickhouse::rows::LogSink;
use crate::domain::{rfc3339_ms, LogType, Position};

/// The first bytes of every stream: how long a browser waits before it reconnects.
pub const RETRY: &[u8] = b"retry: 2000\n\n";

/// What a quiet stream sends every `tail.heartbeat_seconds`: a comment line.
pub const HEARTBEAT: &[u8] = b": heartbeat\n\n";

/// Why a stream ended: the `reason` of its `event: end`, and the label of
/// `logproxy_tail_streams_ended_total` (`disconnected`: the client went away, no event).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EndReason {
    MaxDuration,
    Lagging,
    Unauthorized,
    Shutdown,
    Disconnected,
}

impl EndReason {
    pub const ALL: [EndReason; 5] = [
        EndReason::MaxDuration,
        EndReason::Lagging,
        EndReason::Unauthorized,
        EndReason::Shutdown,
        EndReason::Disconnected,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            EndReason::MaxDuration => "max_duration",
            EndReason::Lagging => "lagging",
            EndReason::Unauthorized => "unauthorized",
            EndReason::Shutdown => "shutdown",
            EndReason::Disconnected => "disconnected",
        }
    }

    /// `event: end` with this reason.
    pub fn frame(self) -> Bytes {
        Bytes::from(format!(
            "event: end\ndata: {{\"reason\":\"{}\"}}\n\n",
            self.as_str()
        ))
    }
}

/// `event: gap`: the entries in `[start_ms, end_ms)` were skipped (more than
/// `tail.max_backfill`); `GET .../logs?start=..&end=..` reads them.
pub fn gap_frame(start_ms: i64, end_ms: i64) -> Bytes {
    Bytes::from(format!(
        "event: gap\ndata: {{\"start\":\"{}\",\"end\":\"{}\"}}\n\n",
        rfc3339_ms(start_ms),
        rfc3339_ms(end_ms)
    ))
}

/// One row a poll found: its place in the order of §11 and its entry's JSON in the batch.
#[derive(Debug, Clone)]
pub struct Found {
    pub ts: i64,
    pub tie: u64,
    json: Range<u32>,
}

impl Found {
    pub fn identity(&self) -> (i64, u64) {
        (self.ts, self.tie)
    }
}

/// The rows of one poll, newest first as queried, each entry written as JSON once.
#[derive(Default)]
pub struct Batch {
    buf: BytesMut,
    pub rows: Vec<Found>,
}

impl LogSink for Batch {
    fn entry(&mut self, timestamp_ms: i64, tie: u64, entry: &impl Serialize) {
        let start = self.buf.len() as u32;
        let mut out = (&mut self.buf).writer();
        serde_json::to_writer(&mut out, entry).expect("serializing to memory");
        self.rows.push(Found {
            ts: timestamp_ms,
            tie,
            json: start..self.buf.len() as u32,
        });
    }
}

impl Batch {
    /// `event: entries` of `rows` (indexes into this batch, in the order to send), with `id`.
    pub fn frame(&self, app_id: &str, log_type: LogType, rows: &[usize], id: &EventId) -> Bytes {
        let size: usize = rows.iter().map(|&i| self.rows[i].json.len() + 1).sum();
        let mut out = BytesMut::with_capacity(size + app_id.len() + 200);
        out.put_slice(b"event: entries\nid: ");
        out.put_slice(id.encode().as_bytes());
        out.put_slice(b"\ndata: {\"app_id\":");
        serde_json::to_writer((&mut out).writer(), app_id).expect("serializing to memory");
        out.put_slice(b",\"log_type\":\"");
        out.put_slice(log_type.as_str().as_bytes());
        out.put_slice(b"\",\"entries\":[");
        for (n, &i) in rows.iter().enumerate() {
            if n > 0 {
                out.put_u8(b',');
            }
            let json = &self.rows[i].json;
            out.put_slice(&self.buf[json.start as usize..json.end as usize]);
        }
        out.put_slice(b"]}\n\n");
        out.freeze()
    }
}

/// What an event's `id` names: the listing (as a cursor's binding), the poller and the
/// event's number in what it sent, and the newest entry the stream had then (the position a
/// resume starts after when that poller's memory is gone).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EventId {
    pub binding: u64,
    pub incarnation: u64,
    pub seq: u64,
    pub position: Position,
}

const VERSION: u8 = 0x74;
const LEN: usize = 1 + 8 * 5 + 4;

impl EventId {
    /// URL-safe base64 (no padding) of the fields and a check over them: 66 characters.
    pub fn encode(&self) -> String {
        let mut out = Vec::with_capacity(LEN + 4);
        out.push(VERSION);
        for field in [
            self.binding,
            self.incarnation,
            self.seq,
            self.position.ts as u64,
            self.position.tie,
        ] {
            out.extend_from_slice(&field.to_le_bytes());
        }
        out.extend_from_slice(&self.position.dup.to_le_bytes());
        out.extend_from_slice(&check(&out).to_le_bytes());
        URL_SAFE_NO_PAD.encode(out)
    }

    /// The id `text` encodes; `None` when it is not one of ours (altered, cut, foreign).
    pub fn decode(text: &str) -> Option<EventId> {
        if text.len() > 128 {
            return None;
        }
        let bytes = URL_SAFE_NO_PAD.decode(text.trim()).ok()?;
        if bytes.len() != LEN + 4 || bytes[0] != VERSION {
            return None;
        }
        let (body, sum) = bytes.split_at(LEN);
        if check(body).to_le_bytes() != sum {
            return None;
        }
        let long = |i: usize| u64::from_le_bytes(body[1 + 8 * i..9 + 8 * i].try_into().unwrap());
        Some(EventId {
            binding: long(0),
            incarnation: long(1),
            seq: long(2),
            position: Position {
                ts: long(3) as i64,
                tie: long(4),
                dup: u32::from_le_bytes(body[41..45].try_into().unwrap()),
            },
        })
    }
}

fn check(bytes: &[u8]) -> u32 {
    let mut h = siphasher::sip::SipHasher24::new_with_keys(0x7461_696c_2d69_6421, 3);
    h.write(bytes);
    h.finish() as u32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_event_id_reads_back_and_an_altered_one_is_refused() {
        let id = EventId {
            binding: 7,
            incarnation: u64::MAX - 3,
            seq: 12,
            position: Position {
                ts: 1_700_000_000_123,
                tie: 99,
                dup: 2,
            },
        };
        let text = id.encode();
        assert!(text
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'));
        assert_eq!(EventId::decode(&text), Some(id));
        for i in 0..text.len() {
            let mut bytes = text.clone().into_bytes();
            bytes[i] = if bytes[i] == b'A' { b'B' } else { b'A' };
            assert_eq!(EventId::decode(&String::from_utf8(bytes).unwrap()), None);
        }
        assert_eq!(EventId::decode(""), None);
        assert_eq!(EventId::decode("not an id"), None);
    }

    #[test]
    fn an_entries_frame_is_one_event_with_the_entries_in_the_order_given() {
        let mut batch = Batch::default();
        for (ts, msg) in [(3, "c"), (2, "b"), (1, "a")] {
            batch.entry(ts, 0, &serde_json::json!({ "m": msg }));
        }
        let id = EventId {
            binding: 1,
            incarnation: 2,
            seq: 3,
            position: Position {
                ts: 3,
                tie: 0,
                dup: 1,
            },
        };
        let frame = batch.frame("app", LogType::Runtime, &[2, 1, 0], &id);
        let text = std::str::from_utf8(&frame).unwrap();
        let expected = format!(
            "event: entries\nid: {}\ndata: {{\"app_id\":\"app\",\"log_type\":\"runtime\",\
             \"entries\":[{{\"m\":\"a\"}},{{\"m\":\"b\"}},{{\"m\":\"c\"}}]}}\n\n",
            id.encode()
        );
        assert_eq!(text, expected);
    }
}
