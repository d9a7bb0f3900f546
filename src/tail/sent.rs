//! `Sent`: what a poller has sent of its listing, and which rows of a new poll are new.
//!
//! Each poll asks for the rows at or after its watermark: the previous poll's start less
//! `tail.overlap_ms`. A row that reached ClickHouse after the previous poll began and at most
//! the overlap after its own timestamp is therefore in the next poll. What was sent is kept
//! by identity (timestamp and tie, the hash of the other columns) with the number of copies
//! sent, for the rows at or after the watermark; exact copies of a row are sent as often as
//! they are stored, and a row is never sent twice.

use std::collections::BTreeMap;

use super::event::Batch;
use crate::domain::Position;

/// Rows skipped because a poll found more than it may send at once: `[start_ms, end_ms)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Gap {
    pub start_ms: i64,
    pub end_ms: i64,
}

/// What one poll brings to a stream: a gap first, if any, then rows (indexes into the
/// batch, oldest first).
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Delivery {
    pub gap: Option<Gap>,
    pub rows: Vec<usize>,
}

#[derive(Debug)]
pub struct Sent {
    /// Copies sent of each identity at or after `watermark_ms`.
    copies: BTreeMap<(i64, u64), u32>,
    /// The next poll's lower bound.
    watermark_ms: i64,
    /// The newest row sent, and how many copies of it.
    newest: Option<Position>,
}

impl Sent {
    /// Nothing sent yet; the first poll asks from `watermark_ms`.
    pub fn new(watermark_ms: i64) -> Self {
        Self {
            copies: BTreeMap::new(),
            watermark_ms,
            newest: None,
        }
    }

    pub fn watermark_ms(&self) -> i64 {
        self.watermark_ms
    }

    /// How many rows a poll that starts at `from_ms` (at most the watermark) may need to
    /// read: the ones sent since the watermark, `backfill` more, and one that tells whether
    /// there were more still.
    pub fn rows_to_ask(&self, backfill: u32) -> u32 {
        let sent = u32::try_from(self.copies.values().map(|&c| u64::from(c)).sum::<u64>());
        sent.unwrap_or(u32::MAX)
            .saturating_add(backfill)
            .saturating_add(1)
    }

    /// The newest row sent so far.
    pub fn newest(&self) -> Option<Position> {
        self.newest
    }

    /// Takes in a poll that began at `started_ms` and asked for `asked` rows: returns the
    /// rows not sent before (oldest first), and the gap when the poll was cut short before
    /// reaching the watermark. With `prime`, the rows found count as sent and none is
    /// returned (a poller's first poll: what was there before its streams opened).
    pub fn take(
        &mut self,
        batch: &Batch,
        asked: u32,
        started_ms: i64,
        overlap_ms: i64,
        prime: bool,
    ) -> Delivery {
        let cut = cut_of(batch, asked);
        let mut delivery = Delivery {
            gap: cut.filter(|&c| c >= self.watermark_ms).map(|c| Gap {
                start_ms: self.watermark_ms,
                end_ms: c + 1,
            }),
            rows: Vec::new(),
        };
        let floor = self.watermark_ms.max(cut.map_or(i64::MIN, |c| c + 1));
        for group in groups(batch) {
            let row = &batch.rows[group.start];
            if row.ts < floor {
                continue;
            }
            let found = group.len() as u32;
            let sent = self.copies.entry(row.identity()).or_insert(0);
            if found > *sent {
                if !prime {
                    // The copies are the same bytes: send the ones not sent yet.
                    delivery
                        .rows
                        .extend(group.start + *sent as usize..group.end);
                }
                *sent = found;
            }
        }
        sort_oldest_first(batch, &mut delivery.rows);
        if let Some(&last) = delivery.rows.last() {
            let row = &batch.rows[last];
            let newest = Position {
                ts: row.ts,
                tie: row.tie,
                dup: self.copies[&row.identity()],
            };
            if self
                .newest
                .is_none_or(|n| (n.ts, n.tie) <= (newest.ts, newest.tie))
            {
                self.newest = Some(newest);
            }
        }
        self.watermark_ms = [
            self.watermark_ms,
            started_ms.saturating_sub(overlap_ms),
            cut.map_or(i64::MIN, |c| c + 1),
        ]
        .into_iter()
        .max()
        .expect("three values");
        self.copies = self.copies.split_off(&(self.watermark_ms, 0));
        delivery
    }
}

/// A stream's share of a poll when it resumes after `after` (or opens: just before its
/// opening time): every row of the batch past that position, oldest first, and the gap when
/// the poll was cut short past it.
pub fn after(batch: &Batch, asked: u32, after: Position) -> Delivery {
    let cut = cut_of(batch, asked);
    let mut delivery = Delivery {
        gap: cut.filter(|&c| c >= after.ts).map(|c| Gap {
            start_ms: after.ts,
            end_ms: c + 1,
        }),
        rows: Vec::new(),
    };
    for group in groups(batch) {
        let row = &batch.rows[group.start];
        if cut.is_some_and(|c| row.ts <= c) {
            continue;
        }
        let skip = match row.identity().cmp(&(after.ts, after.tie)) {
            std::cmp::Ordering::Less => continue,
            std::cmp::Ordering::Equal => (after.dup as usize).min(group.len()),
            std::cmp::Ordering::Greater => 0,
        };
        delivery.rows.extend(group.start + skip..group.end);
    }
    sort_oldest_first(batch, &mut delivery.rows);
    delivery
}

/// The position of the newest of `rows` (oldest first), counting its copies among them
/// and, for a row `before` already held, those too.
pub fn newest_of(batch: &Batch, rows: &[usize], before: Option<Position>) -> Option<Position> {
    let &last = rows.last()?;
    let (ts, tie) = batch.rows[last].identity();
    let here = rows
        .iter()
        .filter(|&&i| batch.rows[i].identity() == (ts, tie))
        .count() as u32;
    let earlier = before
        .filter(|p| (p.ts, p.tie) == (ts, tie))
        .map_or(0, |p| p.dup);
    Some(Position {
        ts,
        tie,
        dup: earlier + here,
    })
}

/// When a poll returned all it asked for, rows may lie beyond its oldest: it is cut at that
/// timestamp, and only newer rows count.
fn cut_of(batch: &Batch, asked: u32) -> Option<i64> {
    (batch.rows.len() >= asked as usize)
        .then(|| batch.rows.last().map(|r| r.ts))
        .flatten()
}

/// Runs of rows of one identity (exact copies are adjacent in the query's order).
fn groups(batch: &Batch) -> impl Iterator<Item = std::ops::Range<usize>> + '_ {
    let rows = &batch.rows;
    let mut start = 0;
    std::iter::from_fn(move || {
        if start >= rows.len() {
            return None;
        }
        let id = rows[start].identity();
        let end = start
            + rows[start..]
                .iter()
                .take_while(|r| r.identity() == id)
                .count();
        let group = start..end;
        start = end;
        Some(group)
    })
}

/// Oldest first: timestamp, then tie (the query returned them newest first).
fn sort_oldest_first(batch: &Batch, rows: &mut [usize]) {
    rows.sort_by_key(|&i| (batch.rows[i].identity(), i));
}

#[cfg(test)]
mod tests {
    use rand::{Rng as _, SeedableRng as _};

    use super::*;
    use crate::clickhouse::rows::LogSink as _;

    /// A row as stored: its timestamp, its content, and when it reached ClickHouse.
    #[derive(Clone, Copy, Debug)]
    struct Stored {
        ts: i64,
        content: u64,
        arrived: i64,
    }

    /// What a poll at `now` from `from_ms` returns: the stored rows visible then, newest
    /// first, at most `limit`.
    fn poll(rows: &[Stored], now: i64, from_ms: i64, limit: u32) -> Batch {
        let mut found: Vec<_> = rows
            .iter()
            .filter(|r| r.arrived <= now && r.ts >= from_ms)
            .collect();
        found.sort_by_key(|r| (std::cmp::Reverse(r.ts), r.content));
        let mut batch = Batch::default();
        for r in found.into_iter().take(limit as usize) {
            batch.entry(r.ts, r.content, &r.content);
        }
        batch
    }

    #[test]
    fn every_row_that_arrives_within_the_overlap_is_sent_once_copies_included() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(3);
        let overlap = 5_000;
        let mut stored = Vec::new();
        let mut now = 1_000_000;
        // Rows before the first poll are primed (not sent).
        for _ in 0..50 {
            let ts = now - rng.random_range(0..20_000);
            stored.push(Stored {
                ts,
                content: rng.random_range(0..4),
                arrived: now - 1,
            });
        }
        let mut sent = Sent::new(now - overlap);
        let batch = poll(&stored, now, sent.watermark_ms(), sent.rows_to_ask(10_000));
        let asked = sent.rows_to_ask(10_000);
        assert!(sent.take(&batch, asked, now, overlap, true).rows.is_empty());
        let before = stored.len();
        let mut received: Vec<(i64, u64)> = Vec::new();
        for _ in 0..300 {
            // New rows: most on time, some up to the overlap late, some exact copies.
            for _ in 0..rng.random_range(0..6) {
                let late = if rng.random_bool(0.3) {
                    rng.random_range(0..overlap - 1)
                } else {
                    0
                };
                let arrived = now + rng.random_range(1..1_000);
                let content = rng.random_range(0..3);
                stored.push(Stored {
                    ts: arrived - late,
                    content,
                    arrived,
                });
                if rng.random_bool(0.1) {
                    stored.push(Stored {
                        ts: arrived - late,
                        content,
                        arrived,
                    });
                }
            }
            now += 1_000 + rng.random_range(0..50);
            let asked = sent.rows_to_ask(10_000);
            let batch = poll(&stored, now, sent.watermark_ms(), asked);
            let delivery = sent.take(&batch, asked, now, overlap, false);
            assert_eq!(delivery.gap, None);
            received.extend(delivery.rows.iter().map(|&i| batch.rows[i].identity()));
        }
        let mut expected: Vec<_> = stored[before..].iter().map(|r| (r.ts, r.content)).collect();
        expected.sort();
        received.sort();
        assert_eq!(received, expected);
    }

    #[test]
    fn a_poll_that_finds_more_than_it_may_send_reports_the_gap_and_sends_the_newest() {
        let rows: Vec<Stored> = (0..30)
            .map(|i| Stored {
                ts: 1_000 + i,
                content: 0,
                arrived: 0,
            })
            .collect();
        let mut sent = Sent::new(1_000);
        let asked = sent.rows_to_ask(9);
        assert_eq!(asked, 10);
        let batch = poll(&rows, 10, sent.watermark_ms(), asked);
        let delivery = sent.take(&batch, asked, 2_000, 5_000, false);
        // 10 asked: the oldest of them (1020) is the cut; 1021..=1029 are sent.
        assert_eq!(
            delivery.gap,
            Some(Gap {
                start_ms: 1_000,
                end_ms: 1_021
            })
        );
        let ts: Vec<i64> = delivery.rows.iter().map(|&i| batch.rows[i].ts).collect();
        assert_eq!(ts, (1_021..1_030).collect::<Vec<_>>());
        assert_eq!(sent.watermark_ms(), 1_021);
        assert_eq!(sent.newest().map(|p| p.ts), Some(1_029));
    }

    #[test]
    fn a_resume_gets_what_lies_past_its_position_copies_counted() {
        let mut batch = Batch::default();
        for (ts, tie) in [(5, 1), (4, 2), (4, 2), (4, 1), (3, 0)] {
            batch.entry(ts, tie, &ts);
        }
        let at = Position {
            ts: 4,
            tie: 2,
            dup: 1,
        };
        let d = after(&batch, 100, at);
        let got: Vec<_> = d.rows.iter().map(|&i| batch.rows[i].identity()).collect();
        assert_eq!(got, [(4, 2), (5, 1)]);
        assert_eq!(
            newest_of(&batch, &d.rows, Some(at)),
            Some(Position {
                ts: 5,
                tie: 1,
                dup: 1
            })
        );
        let opened = Position {
            ts: 3,
            tie: u64::MAX,
            dup: u32::MAX,
        };
        assert_eq!(after(&batch, 100, opened).rows.len(), 4);
        let cut = after(
            &batch,
            5,
            Position {
                ts: 1,
                tie: 0,
                dup: 0,
            },
        );
        assert_eq!(
            cut.gap,
            Some(Gap {
                start_ms: 1,
                end_ms: 4
            })
        );
        assert_eq!(cut.rows.len(), 4, "all but the cut timestamp (3)");
    }
}
