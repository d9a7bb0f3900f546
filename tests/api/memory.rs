//! Memory against the cache budget (issue 26): the `logproxy` binary's RSS over its base,
//! its cache full of every representation of its pages.

use std::time::Duration;

use futures_util::future::join_all;
use logproxy_testkit::{high_entropy_text, rss_bytes};

use crate::helpers::*;
use crate::operations::{clickhouse_section, Served};

const BUDGET_MIB: u64 = 32;
/// 100 entries of high-entropy text a page, ~40 KB, ~115 KB as the cache weighs it with its
/// three compressed views (~22 KB each): 400 apps ask about 45 MiB, more than the budget,
/// so it fills and evicts.
const APPS: u32 = 400;
const ROWS: u32 = 100;
const MESSAGE_CHARS: usize = 280;

#[actix_web::test]
async fn rss_over_base_stays_near_the_cache_budget_full_of_every_representation() {
    // Arrange: the pages' rows, and the binary with a 32 MiB budget, its RSS before any request.
    let settings = test_settings();
    let ch = migrate(&settings).await;
    let now = now_ms();
    for first in (1..=APPS).step_by(100) {
        let rows: Vec<_> = (first..first + 100)
            .flat_map(|app| (0..ROWS).map(move |i| (app, i)))
            .map(|(app, i)| {
                let text = high_entropy_text(MESSAGE_CHARS, u64::from(app * ROWS + i));
                runtime_row(
                    &format!("mem-{app}"),
                    now - i64::from(i) * 1000,
                    "info",
                    &text,
                )
            })
            .collect();
        ch.insert_runtime(&rows).await.expect("insert rows");
    }
    let served = Served::start(&format!(
        "{}[cache]\nttl_seconds = 3600\nmax_bytes = {}\n\
         [rate_limit]\nrequests_per_second = 1000\nburst = 1000\n[auth]\nenabled = false\n",
        clickhouse_section(&settings.clickhouse.database, "canvas_app_logs"),
        BUDGET_MIB << 20
    ));
    actix_web::rt::time::sleep(Duration::from_secs(1)).await;
    let base = rss_bytes(served.child.id());

    // Act: every page in identity, gzip, br and zstd, twice round, 8 requests at a time.
    let http = reqwest::Client::new();
    let requests: Vec<(String, &str)> = (1..=APPS)
        .flat_map(|app| {
            let url = format!("{}/v1/apps/mem-{app}/logs?hours=1&limit=100", served.base);
            ["identity", "gzip", "br", "zstd"].map(|coding| (url.clone(), coding))
        })
        .collect();
    for _ in 0..2 {
        for chunk in requests.chunks(8) {
            let sent = chunk.iter().map(|(url, coding)| {
                let request = http.get(url).header("accept-encoding", *coding);
                async move {
                    let resp = request.send().await.expect("request sent");
                    assert!(resp.status().is_success(), "{url}: {}", resp.status());
                    resp.bytes().await.expect("body");
                }
            });
            join_all(sent).await;
        }
    }

    // Assert: RSS over base within 1.5 x the budget + 16 MiB (the bench's bound is tighter).
    let metrics = reqwest::get(format!("{}/metrics", served.base))
        .await
        .unwrap();
    let cache =
        logproxy_testkit::metric_value(&metrics.text().await.unwrap(), "logproxy_cache_bytes");
    let over = rss_bytes(served.child.id()).saturating_sub(base) as f64 / (1 << 20) as f64;
    let bound = 1.5 * BUDGET_MIB as f64 + 16.0;
    eprintln!(
        "base {:.1} MiB, over base {over:.1} MiB, cache {:.1} MiB, budget {BUDGET_MIB} MiB",
        base as f64 / (1 << 20) as f64,
        cache / (1 << 20) as f64
    );
    assert!(
        cache > 0.9 * (BUDGET_MIB << 20) as f64,
        "the cache is full: {cache} bytes"
    );
    assert!(
        over <= bound,
        "RSS {over:.1} MiB over base, bound {bound:.1} MiB"
    );
}
