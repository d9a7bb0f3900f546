//! Scenarios a to e, the default run (`cargo bench --bench load`): e. the static ceiling
//! and a. hot hits in alternating rounds, b. many apps (~95% hits over a warmed hot set),
//! c. a cold stampede, d. misses only beside the same query sent straight to ClickHouse;
//! then the ratios against the targets. 1M runtime rows over 50 apps, seeded once.

use actix_web::{web, App, HttpResponse, HttpServer};

use super::*;

/// 95%: the warmed hot set, 1,000 apps (50 with data) x 2 level filters x 3 limits.
/// 5%: cold keys, a data app with a random window and level, nearly all misses.
const MANY_APPS_LUA: &str = r#"
local hot_levels = {"", "&level=error"}
local cold_levels = {"&level=warn", "&level=info", "&level=debug"}
local limits = {10, 50, 100}
math.randomseed(7)
request = function()
  local path
  if math.random() < 0.95 then
    path = string.format("/v1/apps/demo-app-%d/logs?hours=24&limit=%d%s",
      math.random(1, 1000), limits[math.random(1, 3)], hot_levels[math.random(1, 2)])
  else
    path = string.format("/v1/apps/demo-app-%d/logs?hours=%d&limit=100%s",
      math.random(1, 50), math.random(2, 168), cold_levels[math.random(1, 3)])
  end
  return wrk.format("GET", path)
end
"#;

/// Fetches every key of scenario b's hot set once (limit 100 answers 10 and 50 too).
async fn warm_hot_set(http: &reqwest::Client, base: &str) {
    let urls: Vec<String> = (1..=1000)
        .flat_map(|app| {
            ["", "&level=error"].map(|level| {
                format!("{base}/v1/apps/demo-app-{app}/logs?hours=24&limit=100{level}")
            })
        })
        .collect();
    for chunk in urls.chunks(16) {
        let requests = chunk
            .iter()
            .map(|url| http.get(url).bearer_auth(KEY).send());
        for resp in join_all(requests).await {
            assert!(resp.unwrap().status().is_success(), "warming the hot set");
        }
    }
}

/// Migrates the bench database and, unless an earlier run did, seeds 1M runtime rows over
/// 50 apps. Returns the runtime rows it holds.
async fn seed_once(ch: &ChClient, config: &std::path::Path) -> u64 {
    run(Command::new(BIN).args(["migrate", "--config"]).arg(config));
    let count = || async {
        ch.raw()
            .query("SELECT count() FROM canvas_app_logs")
            .fetch_one::<u64>()
            .await
            .expect("count runtime rows")
    };
    if count().await < u64::from(APPS * ROWS_PER_APP) {
        let started = Instant::now();
        for table in ["canvas_app_logs", "canvas_request_logs"] {
            ch.raw()
                .query(&format!("TRUNCATE TABLE {table}"))
                .execute()
                .await
                .expect("truncate");
        }
        run(Command::new(BIN)
            .args(["seed", "--config"])
            .arg(config)
            .args([
                "--apps",
                &APPS.to_string(),
                "--rows-per-app",
                &ROWS_PER_APP.to_string(),
                "--hours",
                "24",
            ]));
        println!(
            "seeded {} runtime rows in {:.1} s",
            APPS * ROWS_PER_APP,
            started.elapsed().as_secs_f64()
        );
    }
    count().await
}

/// Serves `body` at `/static` from inside this process, with no logic: the ceiling of
/// what the generator and machine can do with these bytes. Returns its URL.
fn serve_static(body: bytes::Bytes) -> String {
    let port = free_port();
    let server = HttpServer::new(move || {
        let body = body.clone();
        App::new().route(
            "/static",
            web::get().to(move || {
                let body = body.clone();
                async move {
                    HttpResponse::Ok()
                        .content_type("application/json")
                        .body(body)
                }
            }),
        )
    })
    .workers(workers())
    .bind(("127.0.0.1", port))
    .unwrap()
    .run();
    actix_web::rt::spawn(server);
    format!("http://127.0.0.1:{port}/static")
}

/// What every scenario needs: the generator's settings, ClickHouse, the two services.
struct Bench {
    seconds: u64,
    http: reqwest::Client,
    ch_url: String,
    ch: ChClient,
    /// Cache on, TTL 120 s, 16 MiB budget.
    main: Service,
    /// `ttl_seconds = 0`: every request is a miss.
    nocache: Service,
}

/// Scenario b's figures and what the service holds at its end.
struct ManyApps {
    figures: Figures,
    hits: f64,
    rss: u64,
    cache_bytes: f64,
}

impl Bench {
    /// e. static ceiling, then a. hot hits: same generator, connections and bytes. Three
    /// rounds in turn, so a noisy neighbour hits both alike. Returns each round's ratio of
    /// hot hits to the ceiling and each round's hot-hit p99.
    async fn static_ceiling_and_hot_hits(
        &self,
        static_url: &str,
        hot: &str,
        body: &bytes::Bytes,
    ) -> (Vec<f64>, Vec<f64>) {
        let warm = get_body(&self.http, static_url).await;
        assert_eq!(&warm, body, "the static route serves the hot key's bytes");
        let mut ratios = Vec::new();
        let mut hot_p99 = Vec::new();
        for round in 1..=3 {
            let ceiling = wrk(static_url, CONNECTIONS, self.seconds, "").await;
            print_row(&format!("e. static ceiling (64 conns) #{round}"), &ceiling);
            let hot_hits = wrk(hot, CONNECTIONS, self.seconds, "").await;
            print_row(&format!("a. hot hits (64 conns) #{round}"), &hot_hits);
            ratios.push(hot_hits.rps() / ceiling.rps());
            hot_p99.push(hot_hits.p99);
        }
        (ratios, hot_p99)
    }

    /// b. many apps: ~95% hits over a warmed hot set, the rest cold misses.
    async fn many_apps(&self) -> ManyApps {
        let base = &self.main.base;
        let hit_series = "logproxy_cache_requests_total{log_type=\"runtime\",result=\"hit\"}";
        let warm_started = Instant::now();
        warm_hot_set(&self.http, base).await;
        println!(
            "   (b's hot set of 2,000 keys warmed in {:.1} s)",
            warm_started.elapsed().as_secs_f64()
        );
        let hits_before = metric(&self.http, base, hit_series).await;
        let figures = wrk(base, CONNECTIONS, self.seconds, MANY_APPS_LUA).await;
        print_row("b. many apps (64 conns)", &figures);
        let hits = metric(&self.http, base, hit_series).await - hits_before;
        ManyApps {
            figures,
            hits,
            rss: rss_bytes(self.main.child.id()),
            cache_bytes: metric(&self.http, base, "logproxy_cache_bytes").await,
        }
    }

    /// c. cold stampede: 256 connections ask one fresh key at once, five keys in turn.
    /// Returns the ClickHouse queries per key, counted in `system.query_log`.
    async fn cold_stampede(&self) -> Vec<u64> {
        let mut latencies = Vec::new();
        let mut queries_per_key = Vec::new();
        let started = Instant::now();
        let run_id = uuid::Uuid::new_v4().simple().to_string();
        for key in 0..5 {
            let prefix = format!("stampede{}-{key}-", &run_id[..8]);
            let url = format!(
                "{}/v1/apps/demo-app-{}/logs?hours=23&level=debug&limit=100",
                self.main.base,
                key + 2
            );
            let requests = (0..256).map(|i| {
                let req = self
                    .http
                    .get(&url)
                    .bearer_auth(KEY)
                    .header("x-request-id", format!("{prefix}{i}"));
                async move {
                    let started = Instant::now();
                    let ok = req.send().await.is_ok_and(|r| r.status().is_success());
                    (started.elapsed().as_secs_f64() * 1e6, ok)
                }
            });
            for (us, ok) in join_all(requests).await {
                latencies.push(us);
                assert!(ok, "stampede request failed");
            }
            queries_per_key.push(count_queries(self.ch.raw(), &prefix).await);
        }
        let stampede = Figures::from_latencies(latencies, started.elapsed().as_secs_f64(), 0);
        print_row("c. cold stampede (256 at once x5)", &stampede);
        queries_per_key
    }

    /// d. misses only (cache off) beside the same query sent straight to ClickHouse.
    /// Returns the proxy's figures and ClickHouse's.
    async fn misses_only(&self) -> (Figures, Figures) {
        let mut proxy = Vec::new();
        let mut direct = Vec::new();
        let started = Instant::now();
        for i in 0..400u32 {
            let app = i % APPS + 1;
            let url = format!(
                "{}/v1/apps/demo-app-{app}/logs?hours=24&limit=100",
                self.nocache.base
            );
            let t = Instant::now();
            get_body(&self.http, &url).await;
            proxy.push(t.elapsed().as_secs_f64() * 1e6);
            let since = chrono::Utc::now().timestamp_millis() - 24 * 3_600_000;
            let sql = format!(
                "SELECT timestamp_ms, level, message, route_path, request_id FROM {DATABASE}.canvas_app_logs \
                 WHERE app_id = 'demo-app-{app}' AND timestamp_ms >= {since} ORDER BY timestamp_ms DESC LIMIT 100 FORMAT RowBinary"
            );
            let t = Instant::now();
            self.http
                .post(&self.ch_url)
                .body(sql)
                .send()
                .await
                .unwrap()
                .bytes()
                .await
                .unwrap();
            direct.push(t.elapsed().as_secs_f64() * 1e6);
        }
        let seconds = started.elapsed().as_secs_f64() / 2.0;
        let proxy = Figures::from_latencies(proxy, seconds, 0);
        let direct = Figures::from_latencies(direct, seconds, 0);
        print_row("d. misses only, via logproxy", &proxy);
        print_row("d. same query, direct ClickHouse", &direct);
        (proxy, direct)
    }
}

fn print_summary(
    ratios: Vec<f64>,
    hot_p99: Vec<f64>,
    queries_per_key: &[u64],
    (proxy, direct): (&Figures, &Figures),
    many: &ManyApps,
) {
    println!("\nratios and targets");
    println!(
        "  hot hits / static ceiling        {:.2}   (median of {ratios:.2?}; target >= 0.80)",
        median(ratios.clone())
    );
    println!(
        "  hot-hit p99                      {:.3} ms   (median of 3; target <= 5 ms)",
        median(hot_p99) / 1000.0
    );
    println!(
        "  miss p50 - direct p50            {:+.3} ms   (target <= +1 ms)",
        (proxy.p50 - direct.p50) / 1000.0
    );
    println!("  stampede queries per key         {queries_per_key:?}   (target: exactly 1 each)");
    println!(
        "  many apps: hit ratio {:.1}%, RSS {:.1} MiB, cache {:.1} MiB, budget {} MiB   (target RSS <= budget + 64 MiB)",
        100.0 * many.hits / many.figures.requests.max(1) as f64,
        many.rss as f64 / 1048576.0,
        many.cache_bytes / 1048576.0,
        MAX_BYTES / 1048576
    );
}

pub async fn scenarios_a_to_e() {
    install_wrk_if_missing();
    let ch_url = ensure_clickhouse();
    let ch = ChClient::new(&ClickHouseSettings {
        url: ch_url.clone(),
        database: DATABASE.into(),
        ..ClickHouseSettings::default()
    });
    let main_config = config_file("main", &ch_url, TTL_SECONDS);
    let rows = seed_once(&ch, &main_config).await;
    let bench = Bench {
        seconds: load_seconds(),
        http: reqwest::Client::builder()
            .pool_max_idle_per_host(512)
            .pool_idle_timeout(Duration::from_secs(1))
            .build()
            .unwrap(),
        main: start_service(&main_config),
        nocache: start_service(&config_file("nocache", &ch_url, 0)),
        ch_url,
        ch,
    };

    // The hot key, warmed; its exact body is what the static ceiling serves.
    let hot = format!(
        "{}/v1/apps/demo-app-1/logs?hours=24&limit=100",
        bench.main.base
    );
    let body = get_body(&bench.http, &hot).await;
    let static_url = serve_static(body.clone());
    println!(
        "\nlogproxy load bench: {rows} runtime rows, {} cores, {} HTTP workers, wrk -t2, {} s per wrk scenario, body {} bytes\n",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        workers(),
        bench.seconds,
        body.len()
    );

    let (ratios, hot_p99) = bench
        .static_ceiling_and_hot_hits(&static_url, &hot, &body)
        .await;
    let many = bench.many_apps().await;
    let queries_per_key = bench.cold_stampede().await;
    let (proxy, direct) = bench.misses_only().await;
    print_summary(ratios, hot_p99, &queries_per_key, (&proxy, &direct), &many);
}
