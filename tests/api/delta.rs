//! Refreshing a moving window by its newest rows (CONTRACT.md §11): the merged page is
//! byte-identical to a full query made at the same moment (its `next_cursor`, which names
//! the window's start to the millisecond, reads the same next page), rows later than the overlap come
//! with the next full refresh, and ClickHouse reads a small part of the window (counted in
//! its own `system.query_log`).

use std::time::Duration;

use logproxy::clickhouse::RuntimeRow;
use logproxy::config::Settings;
use logproxy_testkit::metric_value;
use reqwest::StatusCode;

use crate::helpers::{
    header, now_ms, request_row, runtime_row, spawn_app_with, start_app, test_settings,
    unique_prefix, TestApp, ALPHA_KEY,
};

/// The settings of the refreshing proxy: pages fresh for a second, refreshed by delta.
fn refreshing() -> Settings {
    let mut settings = test_settings();
    settings.cache.ttl_seconds = 1;
    settings
}

/// A second proxy on the same database with the cache off: every request a full query.
async fn full_queries(of: &TestApp) -> TestApp {
    let mut settings = of.settings.clone();
    settings.cache.ttl_seconds = 0;
    start_app(settings).await
}

async fn refreshes(app: &TestApp, kind: &str) -> f64 {
    let series = format!("logproxy_cache_refreshes_total{{kind=\"{kind}\"}}");
    metric_value(&app.metrics().await, &series)
}

/// A runtime row of `app_id` at `ts` with a message and level that vary with `n`.
fn row(app_id: &str, ts: i64, n: u64) -> RuntimeRow {
    let level = ["info", "warn", "error"][(n % 3) as usize];
    runtime_row(app_id, ts, level, &format!("event {n}"))
}

const TTL_PASSED: Duration = Duration::from_millis(1_100);

/// Asserts that `refreshed` (a body of `app` for `query`) is `expected` (a body of `full`,
/// the same request a moment apart): byte for byte up to `next_cursor`, and a cursor on both
/// or on neither, each reading the same next page (by bytes, up to its own cursor). The
/// cursors themselves name each window's start at its own millisecond.
async fn same_page(app: &TestApp, full: &TestApp, id: &str, query: &str, bodies: [&str; 2]) {
    let [refreshed, expected] = bodies;
    const CURSOR: &str = ",\"next_cursor\":";
    let split = |body: &str| -> (String, Option<String>) {
        let at = body
            .rfind(CURSOR)
            .unwrap_or_else(|| panic!("no next_cursor: {body}"));
        let cursor = body[at + CURSOR.len()..body.len() - 1].trim_matches('"');
        (
            body[..at].to_owned(),
            (cursor != "null").then(|| cursor.to_owned()),
        )
    };
    let ((a, a_next), (b, b_next)) = (split(refreshed), split(expected));
    assert_eq!(a, b, "the entries");
    assert_eq!(
        a_next.is_some(),
        b_next.is_some(),
        "a next page on one side only"
    );
    if let (Some(a_next), Some(b_next)) = (a_next, b_next) {
        let next = async |app: &TestApp, cursor: String| {
            let url = format!("{query}&cursor={cursor}&limit=1000");
            app.get(id, &url).await.text().await.unwrap()
        };
        let (a, b) = (next(app, a_next).await, next(full, b_next).await);
        assert_eq!(split(&a).0, split(&b).0, "the next page");
    }
}

#[actix_web::test]
async fn twenty_delta_refreshes_while_rows_arrive_late_and_on_one_millisecond_match_full_queries_byte_for_byte(
) {
    // Arrange: 300 rows over the last 10 minutes (none near the edge of the 1-hour window,
    // so both proxies' windows hold the same rows); three pages of 50 entries.
    let app = spawn_app_with(refreshing()).await;
    let full = full_queries(&app).await;
    let id = "delta-app";
    let start = now_ms();
    let mut n = 0u64;
    let mut rows: Vec<_> = (0..300)
        .map(|i| {
            n += 1;
            row(id, start - 600_000 + i * 1_900, n)
        })
        .collect();
    app.insert_runtime(&rows).await;
    app.insert_requests(
        &(0..300)
            .map(|i| request_row(id, start - 600_000 + i * 1_900, 200))
            .collect::<Vec<_>>(),
    )
    .await;
    let queries = [
        "hours=1&limit=50",
        "hours=1&limit=50&level=warn",
        "log_type=requests&hours=1&limit=50",
    ];
    for query in queries {
        assert_eq!(app.get(id, query).await.status(), StatusCode::OK);
    }

    // Act and Assert, 20 times: new rows, rows up to 20 s late, three rows on one
    // millisecond and an exact copy of a recent row; then, past the TTL, the refreshed page
    // against a full query made right after it.
    for round in 0..20 {
        let now = now_ms();
        let mut batch: Vec<RuntimeRow> = Vec::new();
        for k in 0..5 {
            n += 1;
            batch.push(row(id, now - k * 7, n));
        }
        for late in [5_000, 12_000, 20_000] {
            n += 1;
            batch.push(row(id, now - late, n));
        }
        for _ in 0..3 {
            n += 1;
            batch.push(row(id, now - 3_000, n));
        }
        batch.push(rows[rows.len() - 2].clone());
        app.insert_runtime(&batch).await;
        let requests: Vec<_> = batch
            .iter()
            .map(|r| request_row(id, r.timestamp_ms, 200 + round))
            .collect();
        app.insert_requests(&requests).await;
        rows.extend(batch);
        actix_web::rt::time::sleep(TTL_PASSED).await;
        for query in queries {
            let refreshed = app.get(id, query).await;
            assert_eq!(header(&refreshed, "x-cache"), "MISS", "{query}");
            let refreshed = refreshed.text().await.unwrap();
            let expected = full.get(id, query).await.text().await.unwrap();
            same_page(&app, &full, id, query, [&refreshed, &expected]).await;
        }
    }
    let (delta, full_refreshes) = (
        refreshes(&app, "delta").await,
        refreshes(&app, "full").await,
    );
    assert_eq!(
        (delta, full_refreshes),
        (60.0, 0.0),
        "every refresh merged its newest rows"
    );
}

#[actix_web::test]
async fn a_refresh_that_finds_no_new_rows_keeps_the_etag_and_its_compressed_view() {
    let app = spawn_app_with(refreshing()).await;
    let id = "quiet-app";
    let now = now_ms();
    app.insert_runtime(
        &(0..100)
            .map(|i| row(id, now - 60_000 - i * 100, i as u64))
            .collect::<Vec<_>>(),
    )
    .await;
    let first = app.get_with_header(id, "", "accept-encoding", "gzip").await;
    let etag = header(&first, "etag");
    actix_web::rt::time::sleep(TTL_PASSED).await;

    let again = app
        .http
        .get(app.logs_url(id, ""))
        .bearer_auth(ALPHA_KEY)
        .header("accept-encoding", "gzip")
        .header("if-none-match", &etag)
        .send()
        .await
        .unwrap();
    assert_eq!(again.status(), StatusCode::NOT_MODIFIED);
    assert_eq!(header(&again, "x-cache"), "MISS", "a refresh ran");
    let metrics = app.metrics().await;
    assert_eq!(
        metric_value(&metrics, r#"logproxy_cache_refreshes_total{kind="delta"}"#),
        1.0
    );
    assert_eq!(
        metric_value(&metrics, r#"logproxy_compressions_total{encoding="gzip"}"#),
        1.0,
        "the refreshed page kept the compressed body"
    );
}

#[actix_web::test]
async fn rows_later_than_the_overlap_appear_with_the_next_full_refresh() {
    // Arrange: the overlap is 1 s, and a full refresh comes every 4 s at most.
    let mut settings = refreshing();
    settings.cache.delta_overlap_ms = 1_000;
    settings.cache.delta_max_age_seconds = 4;
    let app = spawn_app_with(settings).await;
    let id = "late-app";
    let now = now_ms();
    let mut rows: Vec<_> = (0..20)
        .map(|i| row(id, now - 60_000 - i * 1_000, i as u64))
        .collect();
    rows.push(row(id, now - 500, 100));
    app.insert_runtime(&rows).await;
    assert_eq!(app.get(id, "").await.status(), StatusCode::OK);

    // Act: a row 10 s older than the newest one arrives now: past the overlap.
    app.insert_runtime(&[runtime_row(id, now - 10_000, "error", "the late one")])
        .await;

    // Assert: the delta refreshes miss it; the first full refresh brings it.
    let mut seen_by = None;
    for _ in 0..12 {
        actix_web::rt::time::sleep(TTL_PASSED).await;
        let body = app.get(id, "").await.text().await.unwrap();
        let (delta, full) = (
            refreshes(&app, "delta").await,
            refreshes(&app, "full").await,
        );
        let has = body.contains("the late one");
        if full == 0.0 {
            assert!(!has, "a delta refresh cannot see a row past the overlap");
            assert!(delta > 0.0);
        } else {
            assert!(has, "the full refresh brought the late row");
            seen_by = Some((delta, full));
            break;
        }
    }
    let (delta, full) = seen_by.expect("a full refresh within delta_max_age_seconds and a TTL");
    assert!(delta >= 1.0 && full == 1.0, "delta {delta}, full {full}");
}

/// `read_rows` and `query_duration_ms` of the queries whose id starts with `prefix`, from
/// ClickHouse's own query log.
async fn read_rows(app: &TestApp, prefix: &str) -> (u64, u64) {
    logproxy_testkit::settle_query_log(app.ch.raw()).await;
    app.ch
        .raw()
        .query(
            "SELECT sum(read_rows), sum(query_duration_ms) FROM system.query_log \
             WHERE toUInt8(type) = 2 AND startsWith(query_id, ?)",
        )
        .bind(prefix)
        .fetch_one::<(u64, u64)>()
        .await
        .unwrap()
}

#[actix_web::test]
async fn a_delta_refresh_of_two_million_rows_reads_at_least_twenty_times_fewer_rows_than_a_full_one(
) {
    // Arrange: one app with 2,000,000 rows over 24 hours, made by ClickHouse itself.
    let app = spawn_app_with(refreshing()).await;
    let full = full_queries(&app).await;
    let id = "big-app";
    app.ch
        .raw()
        .query(
            "INSERT INTO canvas_app_logs SELECT ?, toInt64(?) - toInt64(number) * 43, 'info', \
             concat('event ', toString(number)), '/api/x', 'r' FROM system.numbers LIMIT 2000000",
        )
        .bind(id)
        .bind(now_ms() - 1_000)
        .execute()
        .await
        .expect("insert 2,000,000 rows");
    assert_eq!(
        app.get(id, "hours=24&limit=100").await.status(),
        StatusCode::OK
    );

    // Act: three times, 100 new rows, then a refresh through each proxy.
    let (delta_prefix, full_prefix) = (unique_prefix("delta"), unique_prefix("full"));
    for round in 0..3 {
        let now = now_ms();
        let fresh: Vec<_> = (0..100)
            .map(|i| row(id, now - i * 5, round * 1_000 + i as u64))
            .collect();
        app.insert_runtime(&fresh).await;
        actix_web::rt::time::sleep(TTL_PASSED).await;
        let delta = app
            .get_with_id(id, "hours=24&limit=100", &format!("{delta_prefix}-{round}"))
            .await;
        let whole = full
            .get_with_id(id, "hours=24&limit=100", &format!("{full_prefix}-{round}"))
            .await;
        let (delta, whole) = (delta.text().await.unwrap(), whole.text().await.unwrap());
        same_page(&app, &full, id, "hours=24", [&delta, &whole]).await;
    }

    // Assert
    let (delta_rows, _) = read_rows(&app, &delta_prefix).await;
    let (full_rows, _) = read_rows(&app, &full_prefix).await;
    assert_eq!(refreshes(&app, "delta").await, 3.0);
    assert!(
        full_rows >= 20 * delta_rows && delta_rows > 0,
        "rows read by 3 refreshes: {delta_rows} by delta, {full_rows} in full"
    );
}
