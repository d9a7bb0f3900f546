//! Scenario o (issue 29): paging a one-week window. One app holds 2,016,000 rows over the
//! 168 hours that ended an hour ago (three rows in each of its milliseconds); a client
//! follows `next_cursor` from the first page to the last, 1,000 entries a page, then does
//! it again. What ClickHouse did for each page comes from its own `system.query_log`
//! (`read_rows`, `query_duration_ms`), found by request id; the second pass, over a window
//! settled long ago, must be all hits with no query.

use std::time::Instant;

use super::*;

const DB: &str = "lp_bench_paging";
const APP: &str = "week-app";
const ROWS: u64 = 2_016_000;
const HOUR_MS: i64 = 3_600_000;

/// The bench's config on the paging database, with room for every page of the week.
fn paging_config(ch_url: &str) -> std::path::PathBuf {
    let path = config_file("paging", ch_url, 1);
    let text = std::fs::read_to_string(&path)
        .unwrap()
        .replace(DATABASE, DB)
        .replace(
            &format!("max_bytes = {MAX_BYTES}"),
            "max_bytes = 2147483648",
        );
    std::fs::write(&path, text).unwrap();
    path
}

/// Follows the window's cursors from its first page; each page's latency (us) and whether
/// it was a hit, in page order.
async fn pass(http: &reqwest::Client, base: &str, window: &str, prefix: &str) -> Vec<(f64, bool)> {
    let mut pages = Vec::new();
    let mut query = format!("{window}&limit=1000");
    loop {
        let url = format!("{base}/v1/apps/{APP}/logs?{query}");
        let started = Instant::now();
        let resp = http
            .get(&url)
            .bearer_auth(KEY)
            .header("x-request-id", format!("{prefix}-{:05}", pages.len()))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200, "page {}", pages.len());
        let hit = resp.headers()["x-cache"] == "HIT";
        let body: Value = resp.json().await.unwrap();
        pages.push((started.elapsed().as_secs_f64() * 1e6, hit));
        match body["next_cursor"].as_str() {
            Some(cursor) => query = format!("limit=1000&cursor={cursor}"),
            None => return pages,
        }
    }
}

/// Scenario o; `cargo bench --bench load -- paging`.
pub async fn paging_a_week() {
    let ch_url = ensure_clickhouse();
    let config = paging_config(&ch_url);
    let ch = emptied_database(&config, &ch_url, DB).await;
    let end = chrono::Utc::now().timestamp_millis() - HOUR_MS;
    let start = end - 168 * HOUR_MS;
    // Three rows in each millisecond, 900 ms apart: 168 hours.
    ch.raw()
        .query(
            "INSERT INTO canvas_app_logs SELECT ?, toInt64(?) - 1 - intDiv(number, 3) * 900, \
             if(number % 1000 = 7, 'error', 'info'), concat('event ', toString(number)), \
             '/api/x', 'r' FROM system.numbers LIMIT ?",
        )
        .bind(APP)
        .bind(end)
        .bind(ROWS)
        .execute()
        .await
        .expect("insert rows");
    let service = start_service(&config);
    let http = reqwest::Client::new();
    let window = format!("start={start}&end={end}");
    let (misses, hits) = (
        format!("bench-page-{}", rand_id()),
        format!("bench-hit-{}", rand_id()),
    );
    let first = pass(&http, &service.base, &window, &misses).await;
    let second = pass(&http, &service.base, &window, &hits).await;

    settle_query_log(ch.raw()).await;
    let log: Vec<(u64, u64)> = ch
        .raw()
        .query(
            "SELECT read_rows, query_duration_ms FROM system.query_log \
             WHERE toUInt8(type) = 2 AND startsWith(query_id, ?) ORDER BY query_id",
        )
        .bind(&misses)
        .fetch_all()
        .await
        .unwrap();
    let hit_queries = count_queries(ch.raw(), &hits).await;
    let n = first.len();
    println!(
        "\no. paging a week: {APP} with {ROWS} rows over 168 h (ended 1 h ago: settled), 1,000 entries a page, {n} pages; ClickHouse's figures from system.query_log\n"
    );
    println!("| pages | queries | rows read per page (mean) | ClickHouse ms per page (mean) | end to end p50 / p99 ms |\n|---|---:|---:|---:|---:|");
    let tenth = (n / 10).max(1);
    for (name, range) in [
        ("first tenth", 0..tenth),
        ("middle tenth", n / 2 - tenth / 2..n / 2 - tenth / 2 + tenth),
        ("last tenth", n - tenth..n),
    ] {
        let queries = &log[range.start.min(log.len())..range.end.min(log.len())];
        let q = queries.len().max(1) as f64;
        let rows = queries.iter().map(|x| x.0).sum::<u64>() as f64 / q;
        let ms = queries.iter().map(|x| x.1).sum::<u64>() as f64 / q;
        let f = Figures::from_latencies(first[range].iter().map(|p| p.0).collect(), 1.0, 0);
        println!(
            "| {name} | {} | {rows:.0} | {ms:.1} | {:.2} / {:.2} |",
            queries.len(),
            f.p50 / 1000.0,
            f.p99 / 1000.0
        );
    }
    let hit_count = second.iter().filter(|p| p.1).count();
    let f = Figures::from_latencies(second.iter().map(|p| p.0).collect(), 1.0, 0);
    println!(
        "| all again (settled) | {hit_queries} | - | - | {:.2} / {:.2} ({hit_count} of {} hits) |",
        f.p50 / 1000.0,
        f.p99 / 1000.0,
        second.len()
    );
}

fn rand_id() -> String {
    format!("{:08x}", rand::random::<u32>())
}
