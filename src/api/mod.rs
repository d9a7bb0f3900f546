//! HTTP routes: the logs endpoint, health, metrics and the OpenAPI document, and which
//! listener serves which of them.

pub mod context;
pub mod cors;
pub mod docs;
pub mod error;
pub mod health;
pub mod http_metrics;
pub mod logs;
pub mod metrics;
pub mod openapi;
pub mod params;
pub mod refusal;
pub mod samples;
pub mod tail;

use std::sync::Arc;

use crate::actors::Registry;
use crate::state::SharedCore;

/// The logs endpoint's route.
pub const LOGS_PATH: &str = "/v1/apps/{app_id}/logs";

/// The paths only the admin listener serves when there is one (`server.admin_bind`):
/// they tell every tenant's name and the cluster's layout to whoever reads them.
pub const ADMIN_PATHS: [&str; 2] = ["/metrics", "/readyz"];

/// Which listener a server is, and so which paths it serves (CONTRACT.md §8).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Listener {
    /// `server.bind` with no admin listener: every path.
    Single,
    /// `server.bind` beside an admin listener: every path but `ADMIN_PATHS`.
    Public,
    /// `server.admin_bind`: `ADMIN_PATHS` and `/healthz`, nothing else.
    Admin,
}

impl Listener {
    /// Whether this listener serves `path` (a route's pattern); any other is 404 there.
    pub fn serves(self, path: &str) -> bool {
        let admin = ADMIN_PATHS.contains(&path);
        match self {
            Listener::Single => true,
            Listener::Public => !admin,
            Listener::Admin => admin || path == "/healthz",
        }
    }
}

/// What every handler can reach.
pub struct AppState {
    pub core: SharedCore,
    pub registry: Arc<Registry>,
    /// `/openapi.json`, rendered at start and on each reload (its level enum may change).
    pub openapi: arc_swap::ArcSwap<bytes::Bytes>,
    /// The live tail streams and their pollers.
    pub tails: crate::tail::Tails,
    pub http_metrics: http_metrics::HttpMetrics,
}
