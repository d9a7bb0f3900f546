//! Signals: SIGTERM and SIGINT drain the server (`/readyz` 503 at once, no new connections,
//! in-flight requests finish within `server.shutdown_timeout_seconds`); SIGHUP reads the
//! config file again and swaps in what may change while running.

use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix_web::dev::ServerHandle;
use actix_web::web;
use prometheus::{IntCounter, Registry};
use tokio::signal::unix::{signal, Signal, SignalKind};

use crate::api::{self, AppState};
use crate::config::{ServerSettings, Settings};
use crate::metrics::counter_vec;
use crate::state::Live;

/// `logproxy_config_reloads_total`: the reloads that worked, and those that failed.
#[derive(Clone)]
pub struct Reloads {
    ok: IntCounter,
    error: IntCounter,
}

impl Reloads {
    pub fn register(registry: &Registry) -> Self {
        let reloads = counter_vec(
            registry,
            "logproxy_config_reloads_total",
            "Configuration reloads on SIGHUP, by result: ok, error.",
            &["result"],
        );
        Self {
            ok: reloads.with_label_values(&["ok"]),
            error: reloads.with_label_values(&["error"]),
        }
    }
}

pub struct Signals {
    state: web::Data<AppState>,
    server: ServerHandle,
    config: PathBuf,
    reloads: Reloads,
    term: Signal,
    int: Signal,
    hup: Signal,
}

impl Signals {
    /// Takes over the three signals now, so none is missed once the server runs.
    pub fn new(
        state: web::Data<AppState>,
        server: ServerHandle,
        config: PathBuf,
        reloads: Reloads,
    ) -> std::io::Result<Self> {
        Ok(Self {
            state,
            server,
            config,
            reloads,
            term: signal(SignalKind::terminate())?,
            int: signal(SignalKind::interrupt())?,
            hup: signal(SignalKind::hangup())?,
        })
    }

    pub async fn watch(mut self) {
        loop {
            let name = tokio::select! {
                _ = self.term.recv() => "SIGTERM",
                _ = self.int.recv() => "SIGINT",
                _ = self.hup.recv() => {
                    self.reload();
                    continue;
                }
            };
            self.drain(name).await;
            return;
        }
    }

    /// `/readyz` 503 and no new connections at once; requests in flight (and those that
    /// open keep-alive connections still send) are answered until none is left or
    /// `shutdown_timeout_seconds` passed; then the server stops.
    async fn drain(&self, signal: &str) {
        let core = &self.state.core;
        core.draining.store(true, Ordering::Release);
        // Live tail streams end at once (`event: end`, `shutdown`); the drain does not wait
        // for them.
        self.state.tails.shutdown();
        self.server.pause().await;
        let timeout = Duration::from_secs(core.settings.server.shutdown_timeout_seconds);
        tracing::info!(
            signal,
            ?timeout,
            "draining: in-flight requests finish, then exit"
        );
        let started = Instant::now();
        while core.in_flight.load(Ordering::Acquire) > 0 && started.elapsed() < timeout {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        self.server.stop(true).await;
    }

    /// Reads the config file again; an invalid one changes nothing.
    fn reload(&self) {
        let result = match Settings::load(&self.config) {
            Ok(settings) => {
                apply(&self.state, &settings);
                let restart = needs_restart(&self.state.core.settings, &settings);
                if restart.is_empty() {
                    tracing::info!(config = %self.config.display(), "configuration reloaded");
                } else {
                    tracing::warn!(
                        config = %self.config.display(),
                        keys = restart.join(", "),
                        "configuration reloaded; these changed keys take effect only after a restart"
                    );
                }
                &self.reloads.ok
            }
            Err(error) => {
                tracing::error!(%error, "configuration reload failed; nothing changed");
                &self.reloads.error
            }
        };
        result.inc();
    }
}

/// Swaps in what a reload may change: tenants (with their cache shares and slot caps),
/// keys and scopes, levels, rate limits and overrides (apps whose quota is the same keep
/// their limiter state), cache TTLs and `tenant_share`.
pub fn apply(state: &AppState, settings: &Settings) {
    let core = &state.core;
    core.live.store(Arc::new(Live::new(settings)));
    let changed = state.registry.requota(&settings.rate_limit);
    core.cache.set_times(&settings.cache);
    core.set_tenants(settings);
    let openapi = api::openapi::rendered(&settings.logs.levels);
    state.openapi.store(Arc::new(openapi));
    tracing::debug!(apps_with_new_quota = changed, "reload applied");
}

/// The keys a reload changed that only a restart applies.
fn needs_restart(running: &Settings, new: &Settings) -> Vec<&'static str> {
    let mut keys = Vec::new();
    let mut check = |changed: bool, key| {
        if changed {
            keys.push(key);
        }
    };
    // `admin_bind` named on its own: it decides which paths the API port answers.
    let server = |s: &Settings| ServerSettings {
        admin_bind: String::new(),
        ..s.server.clone()
    };
    check(server(running) != server(new), "server");
    check(
        running.server.admin_bind != new.server.admin_bind,
        "server.admin_bind",
    );
    check(running.clickhouse != new.clickhouse, "clickhouse");
    check(running.actors != new.actors, "actors");
    check(running.logging != new.logging, "logging");
    check(running.redis != new.redis, "redis");
    check(
        running.cache.max_bytes != new.cache.max_bytes,
        "cache.max_bytes",
    );
    keys
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_changed_admin_bind_is_named_as_needing_a_restart() {
        let running = Settings::default();
        let mut new = running.clone();
        new.server.admin_bind = "127.0.0.1:9464".into();
        assert_eq!(needs_restart(&running, &new), ["server.admin_bind"]);
        new.server.workers = 3;
        assert_eq!(
            needs_restart(&running, &new),
            ["server", "server.admin_bind"]
        );
    }
}
