//! Criterion micro-benches of the hit and miss paths' CPU work: query parsing, the cache
//! key, page serialization and the limit-subsumption prefix.

use std::hash::{BuildHasher, RandomState};
use std::hint::black_box;
use std::time::Instant;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use logproxy::api::params::parse_query;
use logproxy::config::LogsSettings;
use logproxy::page::Page;
use logproxy::seed::{request_rows, runtime_rows, SeedPlan};

const PLAN: SeedPlan = SeedPlan {
    apps: 1,
    rows_per_app: 1000,
    hours: 24,
    seed: 42,
};
const NOW_MS: i64 = 1_795_000_000_000;

fn parse(c: &mut Criterion) {
    let levels = LogsSettings::default().levels;
    let mut group = c.benchmark_group("parse");
    for (name, query) in [
        ("empty", ""),
        (
            "typical",
            "log_type=runtime&hours=24&level=warning&limit=100",
        ),
        (
            "noisy",
            "utm_source=x&log_type=RUNTIME&hours=%2024%20&level=Warn&limit=50&x=1&y=2",
        ),
    ] {
        group.throughput(Throughput::Bytes(query.len() as u64));
        group.bench_function(name, |b| {
            b.iter(|| parse_query(black_box("demo-app-1".into()), black_box(query), &levels))
        });
    }
    group.finish();
}

fn cache_key(c: &mut Criterion) {
    let levels = LogsSettings::default().levels;
    let query = parse_query("demo-app-1".into(), "hours=24&level=warn", &levels).unwrap();
    let hasher = RandomState::new();
    c.bench_function("cache_key/build_and_hash", |b| {
        b.iter(|| {
            let key = black_box(&query).key.clone();
            hasher.hash_one(&key)
        })
    });
}

fn serialize(c: &mut Criterion) {
    let runtime = runtime_rows("demo-app-1", &PLAN, 1, NOW_MS);
    let requests = request_rows("demo-app-1", &PLAN, 1, NOW_MS);
    let mut group = c.benchmark_group("serialize");
    for n in [100usize, 1000] {
        group.throughput(Throughput::Elements(n as u64));
        group.bench_with_input(BenchmarkId::new("runtime", n), &n, |b, &n| {
            b.iter(|| Page::from_runtime("demo-app-1", &runtime[..n], n as u32, Instant::now()))
        });
        group.bench_with_input(BenchmarkId::new("requests", n), &n, |b, &n| {
            b.iter(|| Page::from_requests("demo-app-1", &requests[..n], n as u32, Instant::now()))
        });
    }
    group.finish();
}

fn prefix(c: &mut Criterion) {
    let runtime = runtime_rows("demo-app-1", &PLAN, 1, NOW_MS);
    let page = Page::from_runtime("demo-app-1", &runtime, 1000, Instant::now());
    let mut group = c.benchmark_group("prefix");
    for k in [5u32, 100, 1000] {
        let bytes = page.view(k).body.len();
        group.throughput(Throughput::Bytes(bytes as u64));
        group.bench_with_input(BenchmarkId::new("view", k), &k, |b, &k| {
            b.iter(|| page.view(black_box(k)))
        });
    }
    group.finish();
}

criterion_group!(benches, parse, cache_key, serialize, prefix);
criterion_main!(benches);
