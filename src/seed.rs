//! Deterministic demo logs of both kinds for apps `demo-app-1..N` over the last H hours.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::clickhouse::{ChClient, QueryError, RequestRow, RuntimeRow};

/// Rows written per INSERT.
const BATCH: usize = 50_000;

#[derive(Debug, Clone, Copy)]
pub struct SeedPlan {
    pub apps: u32,
    pub rows_per_app: u32,
    pub hours: u32,
    pub seed: u64,
}

const LEVELS: &[(&str, u32)] = &[
    ("info", 60),
    ("debug", 15),
    ("warn", 12),
    ("error", 8),
    ("log", 5),
];
const ROUTES: &[&str] = &[
    "/api/search",
    "/api/items",
    "/api/items/{id}",
    "/api/upload",
    "/api/auth/login",
    "/api/webhooks/stripe",
    "/health",
];
const MESSAGES: &[(&str, &str)] = &[
    ("info", "request completed in {n} ms"),
    ("info", "cache warmed with {n} keys"),
    ("info", "user signed in"),
    ("debug", "query plan chose index scan ({n} rows)"),
    ("debug", "retrying upstream call, attempt {n}"),
    ("warn", "slow response from vector store: {n} ms"),
    ("warn", "rate limit at {n}% for tenant"),
    ("error", "upstream returned 502 after {n} ms"),
    (
        "error",
        "failed to decode payload: unexpected end of input at byte {n}",
    ),
    ("log", "worker heartbeat #{n}"),
];
const METHODS: &[(&str, u32)] = &[("GET", 70), ("POST", 20), ("PUT", 5), ("DELETE", 5)];
const STATUSES: &[(u16, u32)] = &[
    (200, 80),
    (201, 5),
    (304, 4),
    (400, 4),
    (404, 4),
    (500, 2),
    (503, 1),
];
const AGENTS: &[&str] = &[
    "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0 Safari/537.36",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_5) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.5 Safari/605.1.15",
    "curl/8.5.0",
    "python-requests/2.32.3",
];

fn weighted<'a, T>(rng: &mut ChaCha8Rng, table: &'a [(T, u32)]) -> &'a T {
    let total: u32 = table.iter().map(|(_, w)| w).sum();
    let mut pick = rng.random_range(0..total);
    for (value, weight) in table {
        if pick < *weight {
            return value;
        }
        pick -= weight;
    }
    &table[0].0
}

fn pick<'a, T>(rng: &mut ChaCha8Rng, items: &'a [T]) -> &'a T {
    &items[rng.random_range(0..items.len())]
}

/// The runtime rows of one app; the same `seed` gives the same rows at the same offsets
/// from `now_ms`.
pub fn runtime_rows(app_id: &str, plan: &SeedPlan, app: u32, now_ms: i64) -> Vec<RuntimeRow> {
    let mut rng = ChaCha8Rng::seed_from_u64(plan.seed ^ (u64::from(app) << 32));
    let span = i64::from(plan.hours.max(1)) * 3_600_000;
    (0..plan.rows_per_app)
        .map(|_| {
            let level = *weighted(&mut rng, LEVELS);
            let templates: Vec<_> = MESSAGES.iter().filter(|(l, _)| *l == level).collect();
            let message = pick(&mut rng, &templates)
                .1
                .replace("{n}", &rng.random_range(1..5000).to_string());
            RuntimeRow {
                app_id: app_id.to_owned(),
                timestamp_ms: now_ms - rng.random_range(0..span),
                level: level.to_owned(),
                message,
                route_path: (*pick(&mut rng, ROUTES)).to_owned(),
                request_id: format!("req_{:016x}", rng.random::<u64>()),
            }
        })
        .collect()
}

/// The request rows of one app, deterministic like `runtime_rows`.
pub fn request_rows(app_id: &str, plan: &SeedPlan, app: u32, now_ms: i64) -> Vec<RequestRow> {
    let mut rng = ChaCha8Rng::seed_from_u64(plan.seed ^ (u64::from(app) << 32) ^ 0x5eed);
    let span = i64::from(plan.hours.max(1)) * 3_600_000;
    (0..plan.rows_per_app)
        .map(|_| RequestRow {
            app_id: app_id.to_owned(),
            timestamp_ms: now_ms - rng.random_range(0..span),
            method: (*weighted(&mut rng, METHODS)).to_owned(),
            path: pick(&mut rng, ROUTES).replace("{id}", &rng.random_range(1..10_000).to_string()),
            status_code: *weighted(&mut rng, STATUSES),
            duration_ms: (rng.random::<f64>().powi(3) * 2000.0 * 100.0).round() / 100.0 + 0.5,
            user_agent: (*pick(&mut rng, AGENTS)).to_owned(),
            ip: format!("203.0.113.{}", rng.random_range(1..255)),
        })
        .collect()
}

/// Inserts the plan's rows for `demo-app-1..=apps`; returns the number of rows written.
pub async fn seed(ch: &ChClient, plan: &SeedPlan, now_ms: i64) -> Result<u64, QueryError> {
    let mut written = 0u64;
    let mut runtime = Vec::new();
    let mut requests = Vec::new();
    for app in 1..=plan.apps {
        let app_id = format!("demo-app-{app}");
        runtime.extend(runtime_rows(&app_id, plan, app, now_ms));
        requests.extend(request_rows(&app_id, plan, app, now_ms));
        if runtime.len() >= BATCH || app == plan.apps {
            ch.insert_runtime(&runtime).await?;
            ch.insert_requests(&requests).await?;
            written += (runtime.len() + requests.len()) as u64;
            runtime.clear();
            requests.clear();
        }
    }
    Ok(written)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_seed_gives_the_same_rows_and_another_seed_other_rows() {
        let plan = SeedPlan {
            apps: 1,
            rows_per_app: 50,
            hours: 24,
            seed: 7,
        };
        let a = runtime_rows("demo-app-1", &plan, 1, 1_000_000_000_000);
        assert_eq!(a, runtime_rows("demo-app-1", &plan, 1, 1_000_000_000_000));
        assert_ne!(
            a,
            runtime_rows(
                "demo-app-1",
                &SeedPlan { seed: 8, ..plan },
                1,
                1_000_000_000_000
            )
        );
        let r = request_rows("demo-app-1", &plan, 1, 1_000_000_000_000);
        assert_eq!(r, request_rows("demo-app-1", &plan, 1, 1_000_000_000_000));
        assert!(a
            .iter()
            .all(|row| row.timestamp_ms > 1_000_000_000_000 - 24 * 3_600_000));
    }
}
