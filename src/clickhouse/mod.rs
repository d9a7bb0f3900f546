//! Everything that talks to ClickHouse: the client, fixed SQL templates, row types, failures.

pub mod client;
mod error;
mod query;
pub mod rows;

pub use client::ChClient;
pub use error::QueryError;
pub use rows::{RequestRow, RuntimeRow};
