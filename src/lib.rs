//! logproxy: `GET /v1/apps/{app_id}/logs` for many tenants, cached and rate-limited per app,
//! in front of ClickHouse.

pub mod actors;
pub mod api;
pub mod auth;
pub mod cache;
pub mod cli;
pub mod clickhouse;
pub mod config;
pub mod metrics;
pub mod page;
pub mod seed;
pub mod startup;
pub mod state;
pub mod telemetry;
