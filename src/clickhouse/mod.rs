//! Everything that talks to ClickHouse: the client, fixed SQL templates, row types, failures,
//! the replicas of a shard and the shards of a cluster.

pub mod client;
mod error;
mod metrics;
mod probe;
mod query;
pub mod replicas;
pub mod rows;
pub mod shards;

pub use client::{Bounds, ChClient};
pub use error::QueryError;
pub use metrics::{ClickHouseMetrics, ReplicaMetrics};
pub use replicas::Replicas;
pub use rows::{RequestRow, RuntimeRow};
pub use shards::Shards;
