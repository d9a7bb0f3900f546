//! The black-box tests, one binary: each module starts the app in-process on port 0 (or runs
//! the `logproxy` binary) against a real ClickHouse, through the harness in `helpers`.

mod actors;
mod admin;
mod cache;
mod cli;
mod clickhouse_failures;
mod compression;
mod contract;
mod cors;
mod delta;
mod deploy;
mod docs;
mod edges;
mod endpoints;
mod fleet;
mod front_door;
mod helpers;
mod limits;
mod log_output;
mod logs_data;
mod memory;
mod operations;
mod paging;
mod recovery;
mod replicas;
mod shards;
mod shared;
mod stalls;
mod tail;
mod tenants;
