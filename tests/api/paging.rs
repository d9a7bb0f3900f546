//! Paging through time (CONTRACT.md §14): `start`, `end` and `cursor`, checked against one
//! direct ClickHouse query of the whole window, and what ClickHouse read for each page
//! (`system.query_log`).

use std::collections::HashMap;
use std::time::Duration;

use logproxy::clickhouse::{RequestRow, RuntimeRow};
use logproxy_testkit::count_queries;
use rand::{Rng as _, SeedableRng as _};
use reqwest::StatusCode;
use serde_json::Value;

use crate::helpers::*;

const HOUR: i64 = 3_600_000;

/// `rows` runtime rows of `app` over the `hours` before `end_ms`: three rows in many a
/// millisecond, exact copies of some rows, four levels.
fn runtime_rows(app: &str, n: usize, end_ms: i64, hours: i64, seed: u64) -> Vec<RuntimeRow> {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    let mut rows = Vec::with_capacity(n);
    while rows.len() < n {
        let ts = end_ms - 1 - rng.random_range(0..hours * HOUR);
        let level = ["info", "warn", "error", "debug"][rng.random_range(0..4)];
        let row = RuntimeRow {
            request_id: format!("r{}", rng.random_range(0..5)),
            ..runtime_row(app, ts, level, &format!("m{}", rng.random_range(0..7)))
        };
        match rng.random_range(0..10) {
            0 => rows.extend([row.clone(), row]), // an exact copy
            1 => {
                for i in 0..3 {
                    rows.push(RuntimeRow {
                        message: format!("tie{i}"),
                        ..row.clone()
                    });
                }
            }
            _ => rows.push(row),
        }
    }
    rows
}

/// As `runtime_rows`, for the request table.
fn request_rows(app: &str, n: usize, end_ms: i64, hours: i64, seed: u64) -> Vec<RequestRow> {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    let mut rows = Vec::with_capacity(n);
    while rows.len() < n {
        let ts = end_ms - 1 - rng.random_range(0..hours * HOUR);
        let row = request_row(app, ts, [200, 404, 500][rng.random_range(0..3)]);
        let copies = if rng.random_range(0..8) == 0 { 3 } else { 1 };
        rows.extend(std::iter::repeat_n(row, copies));
    }
    rows
}

/// The entries one ClickHouse query of the whole window returns, in the service's order
/// (`src/clickhouse/query.rs`), as the endpoint writes them.
async fn direct(
    app: &TestApp,
    app_id: &str,
    log_type: &str,
    level: Option<&str>,
    window: (i64, i64),
) -> Vec<Value> {
    let ch = app.ch.raw();
    match log_type {
        "runtime" => {
            let filter = if level.is_some() {
                "AND lower(level) = ?"
            } else {
                ""
            };
            let sql = format!(
                "SELECT ?fields FROM canvas_app_logs WHERE app_id = ? AND timestamp_ms >= ? \
                 AND timestamp_ms < ? {filter} ORDER BY timestamp_ms DESC, \
                 sipHash64(level, message, route_path, request_id), level, message, route_path, request_id"
            );
            let mut q = ch.query(&sql).bind(app_id).bind(window.0).bind(window.1);
            if let Some(level) = level {
                q = q.bind(level);
            }
            let rows = q.fetch_all::<RuntimeRow>().await.unwrap();
            rows.iter()
                .map(|r| serde_json::to_value(r.as_entry()).unwrap())
                .collect()
        }
        _ => {
            let rows = ch
                .query(
                    "SELECT ?fields FROM canvas_request_logs WHERE app_id = ? AND timestamp_ms >= ? \
                     AND timestamp_ms < ? ORDER BY timestamp_ms DESC, \
                     sipHash64(method, path, status_code, duration_ms, user_agent, ip), \
                     method, path, status_code, duration_ms, user_agent, ip",
                )
                .bind(app_id)
                .bind(window.0)
                .bind(window.1)
                .fetch_all::<RequestRow>()
                .await
                .unwrap();
            rows.iter()
                .map(|r| serde_json::to_value(r.as_entry()).unwrap())
                .collect()
        }
    }
}

/// Follows `next_cursor` from the first page of `query` until it is `null`, the limit
/// taken in turn from `limits`, calling `between` after each page; every page must be 200.
/// Returns every entry in order and the number of pages.
async fn page_through(
    app: &TestApp,
    app_id: &str,
    query: &str,
    limits: &[u32],
    mut between: impl AsyncFnMut(usize, &Value),
) -> (Vec<Value>, usize) {
    let mut entries = Vec::new();
    let mut next: Option<String> = None;
    for page in 0.. {
        let limit = limits[page % limits.len()];
        let q = match &next {
            None => format!("{query}&limit={limit}"),
            Some(cursor) => format!("{query}&limit={limit}&cursor={cursor}"),
        };
        let resp = app.get(app_id, &q).await;
        assert_eq!(resp.status(), StatusCode::OK, "page {page}");
        let body = body_json(resp).await;
        let got = body["entries"].as_array().unwrap();
        assert!(got.len() <= limit as usize);
        entries.extend(got.iter().cloned());
        between(page, &body).await;
        match &body["next_cursor"] {
            Value::Null => return (entries, page + 1),
            Value::String(c) => {
                assert!(c.len() <= 256 && !got.is_empty(), "page {page}: {c}");
                next = Some(c.clone());
            }
            other => panic!("next_cursor {other}"),
        }
    }
    unreachable!()
}

#[actix_web::test]
async fn paging_a_window_yields_every_entry_once_newest_first_as_one_query_of_it() {
    // Arrange: 4,000 runtime rows and 1,500 request rows of one app over 20 hours that ended
    // an hour ago (ties, exact copies, four levels), and rows of the hours around it.
    let app = spawn_app().await;
    let app_id = unique_app("pages");
    let end = now_ms() - HOUR;
    let start = end - 20 * HOUR;
    app.insert_runtime(&runtime_rows(&app_id, 4000, end, 20, 1))
        .await;
    app.insert_runtime(&runtime_rows(&app_id, 200, end + HOUR, 1, 2))
        .await; // after it
    app.insert_runtime(&runtime_rows(&app_id, 200, start, 1, 3))
        .await; // before it
    app.insert_requests(&request_rows(&app_id, 1500, end, 20, 4))
        .await;
    let window = format!(
        "start={}&end={}",
        logproxy::domain::rfc3339_ms(start).replace("Z", "%2B00:00"),
        end
    );

    for (log_type, level, limits) in [
        ("runtime", None, &[1000, 7, 333, 1, 120][..]),
        ("runtime", Some("warn"), &[100, 3, 250][..]),
        ("requests", None, &[250, 11, 1000][..]),
    ] {
        // Act: follow next_cursor until null, with the limit changing from page to page.
        // The first page is asked for once before, so that paging starts with a hit (which
        // an app's actor keeps in its front, beside the cursor pages' keys).
        let mut query = format!("log_type={log_type}&{window}");
        if let Some(level) = level {
            query.push_str(&format!("&level={}", level.to_uppercase()));
        }
        let warm = app.get(&app_id, &format!("{query}&limit=1000")).await;
        assert_eq!(warm.status(), StatusCode::OK);
        let (got, pages) = page_through(&app, &app_id, &query, limits, async |_, _| {}).await;

        // Assert: the pages are one query of the window, entry for entry.
        let expected = direct(&app, &app_id, log_type, level, (start, end)).await;
        assert!(expected.len() > 300, "{log_type}: {} rows", expected.len());
        assert!(pages > 3, "{log_type}: {pages} pages");
        assert_eq!(got.len(), expected.len(), "{log_type} {level:?}: entries");
        assert!(
            got == expected,
            "{log_type} {level:?}: the pages differ from one query"
        );
    }
}

#[actix_web::test]
async fn rows_inserted_while_paging_never_make_a_page_repeat_or_skip_an_entry() {
    // Arrange: 1,500 rows over 2 hours up to now (the window reaches now), cache off.
    let mut settings = test_settings();
    settings.cache.ttl_seconds = 0;
    let app = spawn_app_with(settings).await;
    let app_id = unique_app("moving");
    let now = now_ms();
    app.insert_runtime(&runtime_rows(&app_id, 1500, now, 2, 5))
        .await;
    let before = direct(&app, &app_id, "runtime", None, (now - 2 * HOUR, i64::MAX)).await;

    // Act: page through the last 2 hours; after each page, rows go in all over the window:
    // at the page's last timestamp (copies of its last entry and new rows of that
    // millisecond), newer and older ones.
    let mut inserted = 0;
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(9);
    let (got, _) = page_through(
        &app,
        &app_id,
        "hours=2",
        &[97, 250, 13],
        async |page, body| {
            let entries = body["entries"].as_array().unwrap();
            let Some(last) = entries.last() else { return };
            let ts = chrono::DateTime::parse_from_rfc3339(last["timestamp"].as_str().unwrap())
                .unwrap()
                .timestamp_millis();
            let copy = RuntimeRow {
                app_id: app_id.clone(),
                timestamp_ms: ts,
                level: last["level"].as_str().unwrap().into(),
                message: last["message"].as_str().unwrap().into(),
                route_path: last["route_path"].as_str().unwrap().into(),
                request_id: last["request_id"].as_str().unwrap().into(),
            };
            let mut rows = vec![copy.clone(), copy];
            for i in 0..4 {
                rows.push(runtime_row(&app_id, ts, "info", &format!("late{page}-{i}")));
                let anywhere = now - rng.random_range(0..2 * HOUR);
                rows.push(runtime_row(
                    &app_id,
                    anywhere,
                    "warn",
                    &format!("late{page}-any{i}"),
                ));
            }
            inserted += rows.len();
            app.insert_runtime(&rows).await;
        },
    )
    .await;

    // Assert: each entry that was there at the first page came exactly as often as it was
    // there, or more often only by copies inserted since; the order is newest first.
    let count = |entries: &[Value]| {
        let mut counts: HashMap<String, usize> = HashMap::new();
        for e in entries {
            *counts.entry(e.to_string()).or_default() += 1;
        }
        counts
    };
    let (had, came) = (count(&before), count(&got));
    for (entry, n) in &had {
        let m = came.get(entry).copied().unwrap_or(0);
        assert!(m >= *n, "skipped: {entry} came {m} times of {n}");
        assert!(m <= n + 2 * 20, "repeated: {entry} came {m} times of {n}");
    }
    let repeats: usize = had.iter().map(|(e, n)| came[e] - n).sum();
    let new: usize = came
        .iter()
        .filter(|(e, _)| !had.contains_key(*e))
        .map(|(_, m)| m)
        .sum();
    assert!(
        repeats + new <= inserted,
        "{repeats} repeats and {new} new of {inserted} inserted"
    );
    let times: Vec<&str> = got
        .iter()
        .map(|e| e["timestamp"].as_str().unwrap())
        .collect();
    assert!(times.windows(2).all(|w| w[0] >= w[1]), "newest first");
}

#[actix_web::test]
async fn bad_windows_and_cursors_are_refused_in_the_contracts_order() {
    // Arrange: two apps with rows, a cursor of each listing.
    let app = spawn_app().await;
    let (a, b) = (unique_app("cur-a"), unique_app("cur-b"));
    let now = now_ms();
    for id in [&a, &b] {
        app.insert_runtime(&runtime_rows(id, 30, now, 1, 6)).await;
    }
    let cursor_of = async |app_id: &str, query: &str| {
        let body = body_json(app.get(app_id, query).await).await;
        body["next_cursor"]
            .as_str()
            .expect("a next page")
            .to_owned()
    };
    let a_cursor = cursor_of(&a, "limit=5").await;
    let warn_cursor = cursor_of(&a, "limit=1&level=warn").await;

    // Act and assert: 422 per unparsable bound, all at once, beside §1's items.
    let resp = app
        .get(&a, "start=yesterday&end=2026-13-01T00:00:00Z&hours=0")
        .await;
    assert_eq!(resp.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let detail = body_json(resp).await["detail"].clone();
    let kinds: Vec<(&str, &str)> = detail
        .as_array()
        .unwrap()
        .iter()
        .map(|d| (d["loc"][1].as_str().unwrap(), d["type"].as_str().unwrap()))
        .collect();
    assert_eq!(
        kinds,
        [
            ("hours", "greater_than_equal"),
            ("start", "datetime_parsing"),
            ("end", "datetime_parsing")
        ]
    );
    assert!(detail[1]["msg"]
        .as_str()
        .unwrap()
        .starts_with("Input should be a valid datetime, "));

    // 400 invalid_time_range with both bounds, for start >= end and for over 168 hours.
    for q in [
        "start=2026-12-07T10:00:00Z&end=2026-12-07T10:00:00Z".to_owned(),
        "start=2026-12-07T11:00:00%2B01:00&end=2026-12-07T09:59:59.999Z".to_owned(),
        format!("start={}&end={}", now - 169 * HOUR, now),
        format!("start={}", now + HOUR),
    ] {
        let resp = app.get(&a, &q).await;
        assert_eq!(resp.status(), StatusCode::BAD_REQUEST, "{q}");
        let error = body_json(resp).await["error"].clone();
        assert_eq!(error["code"], "invalid_time_range", "{q}");
        assert!(error["details"]["start"].is_string() && error["details"]["end"].is_string());
    }
    let ok = format!("start={}&end={}", now - 168 * HOUR, now);
    assert_eq!(app.get(&a, &ok).await.status(), StatusCode::OK);

    // 400 invalid_cursor: garbage, altered, another app's, log_type's or level's.
    let mut altered = a_cursor.clone().into_bytes();
    altered[10] = if altered[10] == b'A' { b'B' } else { b'A' };
    let altered = String::from_utf8(altered).unwrap();
    for (app_id, q) in [
        (&a, "cursor=nonsense".to_owned()),
        (&a, format!("cursor={altered}")),
        (&b, format!("cursor={a_cursor}")),
        (&a, format!("cursor={a_cursor}&log_type=requests")),
        (&a, format!("cursor={a_cursor}&level=warn")),
        (&a, format!("cursor={warn_cursor}")),
        (&a, format!("cursor={}", "A".repeat(300))),
    ] {
        let resp = app.get(app_id, &q).await;
        assert_eq!(resp.status(), StatusCode::BAD_REQUEST, "{q}");
        assert_eq!(
            body_json(resp).await["error"]["code"],
            "invalid_cursor",
            "{q}"
        );
    }
    // With a cursor, start, end and hours are ignored; the cursor's page is 200.
    let q = format!("cursor={a_cursor}&start=garbage&end=1&hours=5&limit=3");
    assert_eq!(app.get(&a, &q).await.status(), StatusCode::OK);
    // A foreign app is 404 before its cursor is read.
    let resp = app
        .get_logs(&a, &format!("cursor={a_cursor}"), Some(BETA_KEY))
        .await;
    assert_eq!(resp.status(), StatusCode::NOT_FOUND);
}

#[actix_web::test]
async fn a_settled_window_is_cached_as_immutable_and_answered_without_clickhouse_past_the_ttl() {
    // Arrange: a 1 s cache TTL; rows of a window that ended two hours ago (settled after
    // the default 300 s) and of one that reaches now.
    let mut settings = test_settings();
    settings.cache.ttl_seconds = 1;
    let app = spawn_app_with(settings).await;
    let app_id = unique_app("settled");
    let end = now_ms() - 2 * HOUR;
    app.insert_runtime(&runtime_rows(&app_id, 300, end, 3, 7))
        .await;
    let prefix = unique_prefix("settled");
    let settled = format!("start={}&end={end}&limit=50", end - 3 * HOUR);

    // Act: its first page and a cursor page, then both again past the cache's TTL.
    let first = app
        .get_with_id(&app_id, &settled, &format!("{prefix}-1"))
        .await;
    let first_cc = header(&first, "cache-control");
    let cursor = body_json(first).await["next_cursor"]
        .as_str()
        .unwrap()
        .to_owned();
    let deep = format!("cursor={cursor}&limit=50");
    let second = app
        .get_with_id(&app_id, &deep, &format!("{prefix}-2"))
        .await;
    let second_cc = header(&second, "cache-control");
    actix_web::rt::time::sleep(Duration::from_millis(1500)).await;
    let again = app
        .get_with_id(&app_id, &settled, &format!("{prefix}-3"))
        .await;
    let deep_again = app
        .get_with_id(&app_id, &deep, &format!("{prefix}-4"))
        .await;
    let moving = app.get(&app_id, "hours=1").await;

    // Assert: settled pages say immutable and stay hits past the TTL with no query of
    // theirs in ClickHouse's log; a window that reaches now keeps the TTL.
    for cc in [&first_cc, &second_cc] {
        assert!(
            cc.starts_with("private, max-age=") && cc.ends_with(", immutable"),
            "{cc}"
        );
        let age: u64 = cc["private, max-age=".len()..cc.len() - ", immutable".len()]
            .parse()
            .unwrap();
        assert!((3590..=3600).contains(&age), "{cc}");
    }
    assert_eq!(header(&again, "x-cache"), "HIT");
    assert_eq!(header(&deep_again, "x-cache"), "HIT");
    assert!(header(&again, "cache-control").ends_with(", immutable"));
    assert_eq!(
        count_queries(app.ch.raw(), &prefix).await,
        2,
        "the two misses only"
    );
    let moving_cc = header(&moving, "cache-control");
    assert!(
        ["private, max-age=0", "private, max-age=1"].contains(&moving_cc.as_str()),
        "{moving_cc}"
    );
}

#[actix_web::test]
async fn a_deep_page_reads_fewer_rows_than_the_first() {
    // Arrange: 60,000 rows of one app over 30 hours (several parts and granules).
    let app = spawn_app().await;
    let app_id = unique_app("deep");
    let now = now_ms();
    for chunk in 0..6 {
        let rows = runtime_rows(
            &app_id,
            10_000,
            now - chunk * 5 * HOUR,
            5,
            10 + chunk as u64,
        );
        app.insert_runtime(&rows).await;
    }
    let prefix = unique_prefix("deep");

    // Act: page through the last 30 hours, 1,000 entries a page, each page's query named.
    let mut ids = Vec::new();
    let mut next: Option<String> = None;
    for page in 0.. {
        let q = match &next {
            None => "hours=30&limit=1000".to_owned(),
            Some(c) => format!("limit=1000&cursor={c}"),
        };
        let id = format!("{prefix}-{page:03}");
        let body = body_json(app.get_with_id(&app_id, &q, &id).await).await;
        ids.push(id);
        match body["next_cursor"].as_str() {
            Some(c) => next = Some(c.to_owned()),
            None => break,
        }
    }

    // Assert: ClickHouse read fewer rows the deeper the page (read_rows in its query log).
    count_queries(app.ch.raw(), &prefix).await;
    let read: Vec<u64> = app
        .ch
        .raw()
        .query(
            "SELECT read_rows FROM system.query_log WHERE type = 2 AND startsWith(query_id, ?) \
             ORDER BY query_id",
        )
        .bind(&prefix)
        .fetch_all::<u64>()
        .await
        .unwrap();
    assert!(read.len() >= 50, "{} pages", read.len());
    let (first, middle, last) = (read[0], read[read.len() / 2], read[read.len() - 1]);
    assert!(
        middle < first * 3 / 4 && last < middle / 2,
        "rows read: first {first}, middle {middle}, last {last}"
    );
}

#[actix_web::test]
async fn a_cursor_page_has_its_etag_304_compression_and_x_cache_like_any_page() {
    // Arrange: an app with 300 rows; its first page's cursor.
    let app = spawn_app().await;
    let app_id = unique_app("cur-etag");
    app.insert_runtime(&runtime_rows(&app_id, 300, now_ms(), 1, 8))
        .await;
    let first = body_json(app.get(&app_id, "limit=100").await).await;
    let cursor = first["next_cursor"].as_str().unwrap().to_owned();
    let query = format!("cursor={cursor}&limit=100");

    // Act: the cursor page, again with its ETag, and gzip-compressed.
    let page = app.get(&app_id, &query).await;
    let (x_cache, etag) = (header(&page, "x-cache"), header(&page, "etag"));
    let identity = page.bytes().await.unwrap();
    let again = app
        .get_with_header(&app_id, &query, "if-none-match", &etag)
        .await;
    let gzip = app
        .get_with_header(&app_id, &query, "accept-encoding", "gzip")
        .await;

    // Assert: a miss then a hit, 304 for its ETag, and a gzip body that is the same bytes
    // under its own ETag.
    assert_eq!(x_cache, "MISS");
    assert_eq!(again.status(), StatusCode::NOT_MODIFIED);
    assert_eq!(header(&again, "x-cache"), "HIT");
    assert_eq!(header(&gzip, "content-encoding"), "gzip");
    assert_ne!(header(&gzip, "etag"), etag);
    let mut unzipped = Vec::new();
    std::io::Read::read_to_end(
        &mut flate2::read::GzDecoder::new(&gzip.bytes().await.unwrap()[..]),
        &mut unzipped,
    )
    .unwrap();
    assert_eq!(unzipped, identity);
}
