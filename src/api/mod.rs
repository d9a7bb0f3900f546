//! HTTP routes: the logs endpoint, health, metrics and the OpenAPI document.

pub mod context;
pub mod cors;
pub mod error;
pub mod health;
pub mod logs;
pub mod metrics;
pub mod openapi;
pub mod params;
pub mod refusal;

use std::sync::Arc;

use crate::actors::Registry;
use crate::state::SharedCore;

/// What every handler can reach.
pub struct AppState {
    pub core: SharedCore,
    pub registry: Arc<Registry>,
    /// `/openapi.json`, rendered at start and on each reload (its level enum may change).
    pub openapi: arc_swap::ArcSwap<bytes::Bytes>,
}
