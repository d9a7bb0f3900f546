//! Everything that talks to ClickHouse: the client, fixed SQL templates, row types, failures.

pub mod client;
mod error;
mod query;
pub mod replicas;
pub mod rows;

pub use client::ChClient;
pub use error::QueryError;
pub use replicas::Replicas;
pub use rows::{RequestRow, RuntimeRow};
