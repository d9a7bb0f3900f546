//! `[server]`, `[logging]`, `[cors]`, `[compression]` and `[actors]`: how the process serves HTTP.

use serde::Deserialize;

use super::list::list_or_comma_separated;

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CompressionSettings {
    /// Bodies shorter than this are sent as they are, whatever the client accepts.
    pub min_bytes: usize,
}

impl Default for CompressionSettings {
    fn default() -> Self {
        Self { min_bytes: 1024 }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CorsSettings {
    /// Origins whose browsers may read the answers (`"*"`: any); empty: CORS off.
    #[serde(deserialize_with = "list_or_comma_separated")]
    pub allowed_origins: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerSettings {
    /// Address to listen on; port 0 picks a free port.
    pub bind: String,
    /// A second listener for `/metrics`, `/readyz` and `/healthz` only, which `bind` then
    /// no longer serves (but `/healthz`); empty: `bind` serves everything.
    pub admin_bind: String,
    /// HTTP worker threads; 0 means one per core.
    pub workers: usize,
    /// An idle keep-alive connection is closed after this long (longer than a load
    /// balancer's idle timeout, so the balancer closes first).
    pub keep_alive_seconds: u64,
    /// A connection must send a whole request head within this long.
    pub client_request_timeout_ms: u64,
    /// On SIGTERM/SIGINT, in-flight requests get this long to finish.
    pub shutdown_timeout_seconds: u64,
    /// Open connections per worker; more wait in the listen backlog.
    pub max_connections: usize,
    /// A connection whose sent data stays unacknowledged this long (a client that stops
    /// reading, or is gone) is dropped by the kernel (TCP_USER_TIMEOUT); 0: the OS default.
    pub send_timeout_seconds: u64,
    /// `GET /docs`, the API reference page (Swagger UI over `/openapi.json`); false: `/docs`
    /// is 404, as any unknown path.
    pub docs: bool,
    /// A file `serve` writes its process id to once its listeners are bound, and removes at
    /// exit, so that `kill -HUP "$(cat FILE)"` signals this process and no other; empty: none.
    pub pid_file: String,
}

impl Default for ServerSettings {
    fn default() -> Self {
        Self {
            bind: "127.0.0.1:8080".into(),
            admin_bind: String::new(),
            workers: 0,
            keep_alive_seconds: 75,
            client_request_timeout_ms: 5000,
            shutdown_timeout_seconds: 30,
            max_connections: 25_000,
            send_timeout_seconds: 20,
            docs: true,
            pid_file: String::new(),
        }
    }
}

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LoggingSettings {
    pub format: LogFormat,
    /// A `tracing` filter (`info`, `warn,logproxy=debug`, ...); `RUST_LOG` wins when set.
    pub level: String,
    /// One line per request: method, path, status, duration, cache result, tenant.
    pub access: bool,
}

impl Default for LoggingSettings {
    fn default() -> Self {
        Self {
            format: LogFormat::Text,
            level: "info".into(),
            access: false,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ActorSettings {
    /// Dedicated arbiter threads for the per-app actors; 0 (the default) puts the actors
    /// on the HTTP worker threads, which saves a thread hop on many requests.
    pub arbiters: usize,
    /// Messages an app's mailbox holds before requests get 503 `overloaded`.
    pub mailbox_capacity: usize,
    /// An app's actor stops after this many idle seconds.
    pub idle_timeout_seconds: u64,
}

impl Default for ActorSettings {
    fn default() -> Self {
        Self {
            arbiters: 0,
            mailbox_capacity: 1024,
            idle_timeout_seconds: 300,
        }
    }
}
