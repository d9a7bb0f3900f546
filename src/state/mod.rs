//! `Core`: what every app actor shares (settings, ClickHouse, page cache, metrics, the
//! process-wide query slots); the miss path that uses them is in `miss.rs`.

mod miss;

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arc_swap::ArcSwap;

use crate::auth::Auth;

use crate::cache::{CacheMetrics, PageCache};
use crate::clickhouse::{ClickHouseMetrics, Shards};
use crate::config::{CacheSettings, CorsSettings, RateLimitSettings, Settings};
use crate::domain::LogType;
use crate::fleet::{Fleet, FleetMetrics};
use crate::metrics::Metrics;
use crate::slots::{QuerySlots, SlotLimits, SlotMetrics};
use crate::telemetry::DroppedLines;

/// What SIGHUP may change while the process runs; read per request, swapped whole.
pub struct Live {
    pub auth: Auth,
    pub levels: Vec<String>,
    pub rate_limit: RateLimitSettings,
    pub cors: CorsSettings,
    /// TTLs and the refresh by newest rows (`delta_*`).
    pub cache: CacheSettings,
}

impl Live {
    pub fn new(settings: &Settings) -> Self {
        Self {
            auth: Auth::new(&settings.auth),
            levels: settings.logs.levels.clone(),
            rate_limit: settings.rate_limit.clone(),
            cors: settings.cors.clone(),
            cache: settings.cache.clone(),
        }
    }
}

pub struct Core {
    /// The settings the process started with: what a reload cannot change.
    pub settings: Settings,
    pub live: ArcSwap<Live>,
    /// Set on SIGTERM/SIGINT: `/readyz` answers 503 while in-flight requests finish.
    pub draining: AtomicBool,
    /// HTTP requests being answered now (kept by `api::context`).
    pub in_flight: AtomicUsize,
    /// The shards of the cluster (one, of the replicas, without one).
    pub shards: Arc<Shards>,
    pub cache: PageCache,
    /// With `redis.url`: what the fleet of proxies shares.
    pub fleet: Option<Fleet>,
    /// The registry: every module's families, rendered at a scrape.
    pub metrics: Metrics,
    cache_metrics: CacheMetrics,
    clickhouse_metrics: ClickHouseMetrics,
    slot_metrics: SlotMetrics,
    dropped_lines: DroppedLines,
    /// The process's query slots, shared fairly between tenants and capped per tenant
    /// and per app.
    pub slots: Arc<QuerySlots>,
    /// The configured tenants' names, as the last (re)load set them.
    tenants: Mutex<Vec<Arc<str>>>,
    queue_timeout: Duration,
    queries: AtomicU64,
    /// Request ids are this process's random prefix and a counter: unique, and cheaper
    /// than a random UUID per request.
    id_prefix: u64,
    requests: AtomicU64,
}

impl Core {
    /// Fails only on a `redis.url` the Redis client cannot use.
    pub fn new(settings: Settings, metrics: Metrics) -> anyhow::Result<Self> {
        let registry = metrics.registry();
        let fleet_metrics = FleetMetrics::register(registry);
        let fleet = match settings.redis.enabled() {
            true => Some(Fleet::new(&settings.redis, fleet_metrics)?),
            false => None,
        };
        let clickhouse_metrics = ClickHouseMetrics::register(registry);
        let ch = &settings.clickhouse;
        let slots = QuerySlots::new(SlotLimits {
            total: ch.max_concurrent_queries,
            per_tenant: ch.per_tenant_slots(),
            per_app: ch.max_concurrent_queries_per_app,
        });
        let core = Self {
            fleet,
            live: ArcSwap::from_pointee(Live::new(&settings)),
            draining: AtomicBool::new(false),
            in_flight: AtomicUsize::new(0),
            shards: Arc::new(Shards::new(&settings.clickhouse, |s, r| {
                clickhouse_metrics.replica(s, r)
            })),
            cache: PageCache::new(&settings.cache, settings.compression.min_bytes),
            slots,
            tenants: Mutex::new(Vec::new()),
            queue_timeout: Duration::from_millis(settings.clickhouse.queue_timeout_ms),
            queries: AtomicU64::new(0),
            id_prefix: rand::random(),
            requests: AtomicU64::new(0),
            cache_metrics: CacheMetrics::register(registry),
            clickhouse_metrics,
            slot_metrics: SlotMetrics::register(registry),
            dropped_lines: DroppedLines::register(registry),
            metrics,
            settings,
        };
        core.set_tenants(&core.settings);
        Ok(core)
    }

    /// Gives each configured tenant of `settings` its cache share, slot cap and metrics;
    /// a tenant no longer configured loses them (and its cached pages).
    pub fn set_tenants(&self, settings: &Settings) {
        let names: Vec<Arc<str>> = settings
            .auth
            .tenants
            .iter()
            .map(|t| Arc::from(t.name.as_str()))
            .collect();
        let share = (settings.cache.tenant_share * self.settings.cache.max_bytes as f64) as u64;
        let per_tenant = self.settings.clickhouse.per_tenant_slots();
        let mut current = self.tenants.lock().unwrap_or_else(|e| e.into_inner());
        for gone in current.iter().filter(|n| !names.contains(n)) {
            self.cache_metrics.remove_tenant(gone);
            self.slot_metrics.remove_tenant(gone);
        }
        let handles = names
            .iter()
            .map(|n| {
                self.cache_metrics.add_tenant(n, share);
                (n.clone(), self.slot_metrics.add_tenant(n, per_tenant))
            })
            .collect();
        self.slots.set_tenants(handles);
        self.cache.set_tenants(&names);
        *current = names;
    }

    /// The scrape's text: the gauges read at a scrape (the cache's size, the query slots
    /// in use, each configured tenant's cache bytes and evictions) set, then every metric
    /// gathered. The tenants' part and the gathering happen under the tenants' lock: a
    /// reload removing a tenant cannot have its series made again by a scrape that began
    /// before it, and no scrape sees half a reload (one family gathered before it, the
    /// next after).
    pub fn render_metrics(&self) -> String {
        let (entries, bytes) = self.cache.usage();
        self.cache_metrics.set_usage(entries, bytes);
        let in_use = self.query_slots_in_use() as i64;
        self.slot_metrics.in_use.set(in_use);
        self.dropped_lines.update();
        let current = self.tenants.lock().unwrap_or_else(|e| e.into_inner());
        for tenant in current.iter() {
            let (bytes, evictions) = self.cache.tenant_usage(tenant);
            self.cache_metrics
                .set_tenant_usage(tenant, bytes, evictions);
        }
        self.metrics.render()
    }

    /// Query slots of the process held now.
    pub fn query_slots_in_use(&self) -> usize {
        self.slots.in_use()
    }

    /// A new request id, e.g. `3f9a0c2e71d4b8a5-1c`: `{prefix:016x}-{n:x}`, written without
    /// the formatting machinery (every request without its own id makes one).
    pub fn next_request_id(&self) -> String {
        let n = self.requests.fetch_add(1, Ordering::Relaxed);
        let mut id = String::with_capacity(33);
        push_hex(&mut id, self.id_prefix, 16);
        id.push('-');
        push_hex(
            &mut id,
            n,
            (64 - n.leading_zeros()).div_ceil(4).max(1) as usize,
        );
        id
    }

    /// Counts an answer in the cache metrics, and the compression it did, if any.
    pub fn count_served(&self, log_type: LogType, served: &crate::cache::Served) {
        self.cache_metrics.count(log_type, served.result);
        if let (true, Some(coding)) = (served.compressed, served.coding) {
            self.cache_metrics.count_compression(coding);
        }
    }
}

/// The low `digits` hex digits of `value`, lower case.
fn push_hex(out: &mut String, value: u64, digits: usize) {
    for i in (0..digits).rev() {
        out.push(char::from(
            b"0123456789abcdef"[(value >> (i * 4)) as usize & 0xf],
        ));
    }
}

/// Shared handle.
pub type SharedCore = Arc<Core>;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::TenantSettings;

    fn with_tenant(name: &str) -> Settings {
        let mut settings = Settings::default();
        settings.auth.tenants = vec![TenantSettings {
            name: name.into(),
            api_key_sha256: vec![crate::auth::hash_key(name)],
            apps: vec!["*".into()],
            scopes: vec!["logs:read".into()],
        }];
        settings
    }

    #[test]
    fn a_scrape_sees_the_tenants_before_a_reload_or_after_it_never_half_of_it() {
        let core = Arc::new(Core::new(with_tenant("a"), Metrics::new()).unwrap());
        let (a, b) = (with_tenant("a"), with_tenant("b"));
        let reloads = {
            let core = core.clone();
            std::thread::spawn(move || {
                for i in 0..2_000 {
                    core.set_tenants(if i % 2 == 0 { &b } else { &a });
                }
            })
        };
        loop {
            let finished = reloads.is_finished();
            let text = core.render_metrics();
            let (has_a, has_b) = (
                text.contains(r#"tenant="a""#),
                text.contains(r#"tenant="b""#),
            );
            assert!(has_a != has_b, "a scrape saw half a reload");
            if finished {
                break;
            }
        }
        reloads.join().unwrap();
    }

    #[test]
    fn push_hex_writes_what_format_writes() {
        for (value, digits) in [
            (0, 1),
            (0x1c, 2),
            (u64::MAX, 16),
            (0x3f9a0c2e71d4b8a5, 16),
            (7, 16),
        ] {
            let mut out = String::new();
            super::push_hex(&mut out, value, digits);
            assert_eq!(out, format!("{value:0digits$x}"));
        }
    }
}
