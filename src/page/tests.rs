//! Unit tests of pages: bodies, views, the fleet's form, and merging a refresh.

use super::*;
use crate::clickhouse::rows::LogSink as _;
use crate::clickhouse::RuntimeRow;
use crate::domain::LogType;
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
    let short = Page::from_runtime("a", &rows[..6], 5, Instant::now());
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
    assert!(page(6, 5).covers(5) && page(6, 5).covers(1) && !page(6, 5).covers(6));
    assert!(page(5, 5).covers(1000), "the window holds no sixth row");
    assert!(page(3, 5).covers(1000));
    assert!(page(0, 5).covers(1000));
}

#[test]
fn a_shared_page_comes_back_byte_exact_and_damaged_bytes_are_refused() {
    let p = page(6, 5);
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

#[test]
fn a_refresh_goes_on_with_the_older_entries_byte_for_byte_and_the_fleet_keeps_its_full_age() {
    let rows: Vec<_> = (0..10).map(|i| row(1_000_000 - i * 10, "m")).collect();
    let full_at = Instant::now() - std::time::Duration::from_secs(7);
    let listing = Listing::recent("a");
    let old = {
        let mut b = PageBuilder::new("a", LogType::Runtime, 10, listing);
        for r in &rows {
            let e = r.as_entry();
            b.entry(r.timestamp_ms, e.tie, &e);
        }
        b.finish(full_at)
    };
    // Two new rows, then the old entries before 999_960 still at or after 999_930.
    let mut b = PageBuilder::new("a", LogType::Runtime, 10, listing);
    for ts in [1_000_050, 1_000_040] {
        let r = row(ts, "new");
        b.entry(ts, r.as_entry().tie, &r.as_entry());
    }
    b.extend_older(&old, 999_960, 999_930);
    let merged = b.finish_merged(Instant::now(), old.full_at());
    let expected: Vec<_> = [row(1_000_050, "new"), row(1_000_040, "new")]
        .into_iter()
        .chain(rows[5..8].iter().cloned())
        .collect();
    let direct = {
        let mut b = PageBuilder::new("a", LogType::Runtime, 10, listing);
        for r in &expected {
            b.entry(r.timestamp_ms, r.as_entry().tie, &r.as_entry());
        }
        b.finish(Instant::now())
    };
    assert_eq!(merged.view(10).body, direct.view(10).body);
    assert_eq!(merged.count_since(999_950), 3);
    assert_eq!(merged.full_at(), Some(full_at));

    let back = Page::from_shared(Bytes::from(merged.to_shared()), merged.fetched_at).unwrap();
    assert_eq!(back.view(10).body, merged.view(10).body);
    assert_eq!(back.newest_ms(), Some(1_000_050));
    let age = back.fetched_at - back.full_at().unwrap();
    assert!(age.as_millis().abs_diff(7_000) < 50, "{age:?}");
}
