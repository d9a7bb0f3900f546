//! `ChClient`: the official `clickhouse` crate configured from settings, with every call
//! bounded in time and its failures classified.

use std::future::Future;
use std::time::Duration;

use clickhouse::query::Query;
use clickhouse::sql::Identifier;
use clickhouse::{Client, Compression, Row, RowOwned, RowRead, RowWrite};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

use super::query::*;
use super::rows::{LogSink, RequestEntryRow, RuntimeEntryRow};
use super::{QueryError, RequestRow, RuntimeRow};
use crate::config::ClickHouseSettings;
use crate::domain::{LogQuery, LogType};

const DDL_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Clone)]
pub struct ChClient {
    client: Client,
    runtime_table: String,
    requests_table: String,
    database: String,
    query_timeout: Duration,
}

impl ChClient {
    /// A client of the first replica (`clickhouse.url`, or the first of `urls`).
    pub fn new(settings: &ClickHouseSettings) -> Self {
        Self::with_url(settings, &settings.replica_urls()[0])
    }

    /// A client of the server at `url`, with everything else from `settings`.
    pub fn with_url(settings: &ClickHouseSettings, url: &str) -> Self {
        let query_timeout = Duration::from_millis(settings.query_timeout_ms);
        // The server stops the query too, in whole seconds (what 18.16 accepts).
        let server_seconds = settings.query_timeout_ms.div_ceil(1000).max(1);
        // The crate's default HTTP client, plus TCP_NODELAY: a query is one small request
        // and should never wait on Nagle's algorithm.
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        connector.set_keepalive(Some(Duration::from_secs(60)));
        let http = hyper_util::client::legacy::Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(2))
            .build(connector);
        let client = Client::with_http_client(http)
            .with_url(url)
            .with_database(&settings.database)
            .with_user(&settings.user)
            .with_password(&settings.password)
            .with_validation(settings.validation)
            .with_compression(if settings.compression {
                Compression::Lz4
            } else {
                Compression::None
            })
            .with_setting("max_execution_time", server_seconds.to_string());
        Self {
            client,
            runtime_table: settings.runtime_table.clone(),
            requests_table: settings.requests_table.clone(),
            database: settings.database.clone(),
            query_timeout,
        }
    }

    /// The underlying client, for tests and tools that need a query of their own.
    pub fn raw(&self) -> &Client {
        &self.client
    }

    /// The newest `limit` rows of one app at or after `since_ms`, newest first, handed to
    /// `sink` as they are decoded. `query_id` names the query on the server.
    pub async fn logs(
        &self,
        q: &LogQuery,
        since_ms: i64,
        limit: u32,
        query_id: &str,
        sink: &mut impl LogSink,
    ) -> Result<(), QueryError> {
        match q.key.log_type {
            LogType::Runtime => {
                let query = match q.key.level.as_deref() {
                    None => self
                        .client
                        .query(RUNTIME_LOGS)
                        .bind(Identifier(&self.runtime_table))
                        .bind(&*q.key.app_id)
                        .bind(since_ms),
                    Some(level) => self
                        .client
                        .query(RUNTIME_LOGS_BY_LEVEL)
                        .bind(Identifier(&self.runtime_table))
                        .bind(&*q.key.app_id)
                        .bind(since_ms)
                        .bind(level_spellings(level)),
                };
                let query = query.bind(limit);
                self.each::<RuntimeEntryRow<'static>>(query, query_id, |row| {
                    sink.entry(row.timestamp_ms, &row)
                })
                .await
            }
            LogType::Requests => {
                let query = self
                    .client
                    .query(REQUEST_LOGS)
                    .bind(Identifier(&self.requests_table))
                    .bind(&*q.key.app_id)
                    .bind(since_ms)
                    .bind(limit);
                self.each::<RequestEntryRow<'static>>(query, query_id, |row| {
                    sink.entry(row.timestamp_ms, &row)
                })
                .await
            }
        }
    }

    /// Runs `query`, calling `f` with each row as it is decoded (borrowed, not copied).
    async fn each<T: Row + RowRead>(
        &self,
        query: Query,
        query_id: &str,
        mut f: impl FnMut(T::Value<'_>),
    ) -> Result<(), QueryError> {
        let query = query.with_setting("query_id", query_id);
        let rows = async {
            let mut cursor = query.fetch::<T>()?;
            while let Some(row) = cursor.next().await? {
                f(row);
            }
            Ok(())
        };
        bounded(self.query_timeout, rows).await
    }

    /// Whether the server answers, within `timeout`, that its database holds both log
    /// tables (a server without them is no use).
    pub async fn probe(&self, timeout: Duration) -> Result<(), QueryError> {
        let query = self
            .client
            .query(PROBE)
            .bind(&self.runtime_table)
            .bind(&self.requests_table);
        let found = bounded(timeout, query.fetch_one::<u64>()).await?;
        let wanted = if self.runtime_table == self.requests_table {
            1
        } else {
            2
        };
        if found == wanted {
            Ok(())
        } else {
            Err(QueryError::Exception {
                code: None,
                message: format!(
                    "database {} lacks table {} or {}",
                    self.database, self.runtime_table, self.requests_table
                ),
            })
        }
    }

    /// Asks the server to stop the query `query_id` (and not to wait for it to end).
    pub async fn kill_query(&self, query_id: &str, timeout: Duration) -> Result<(), QueryError> {
        let kill = self.client.query(KILL_QUERY).bind(query_id);
        bounded(timeout, kill.execute()).await
    }

    /// Creates the database and both tables; safe to run again.
    pub async fn migrate(&self) -> Result<(), QueryError> {
        let system = self.client.clone().with_database("system");
        let create_db = system
            .query(CREATE_DATABASE)
            .bind(Identifier(&self.database));
        bounded(DDL_TIMEOUT, create_db.execute()).await?;
        for (ddl, table) in [
            (CREATE_RUNTIME_TABLE, &self.runtime_table),
            (CREATE_REQUESTS_TABLE, &self.requests_table),
        ] {
            let query = self.client.query(ddl).bind(Identifier(table));
            bounded(DDL_TIMEOUT, query.execute()).await?;
        }
        Ok(())
    }

    pub async fn insert_runtime(&self, rows: &[RuntimeRow]) -> Result<(), QueryError> {
        self.insert(&self.runtime_table, rows).await
    }

    pub async fn insert_requests(&self, rows: &[RequestRow]) -> Result<(), QueryError> {
        self.insert(&self.requests_table, rows).await
    }

    async fn insert<T: RowOwned + RowWrite>(
        &self,
        table: &str,
        rows: &[T],
    ) -> Result<(), QueryError> {
        let work = async {
            let mut insert = self.client.insert::<T>(table).await?;
            for row in rows {
                insert.write(row).await?;
            }
            insert.end().await
        };
        bounded(DDL_TIMEOUT, work).await
    }
}

/// Runs a ClickHouse call within `timeout`, classifying what goes wrong.
async fn bounded<T>(
    timeout: Duration,
    call: impl Future<Output = clickhouse::error::Result<T>>,
) -> Result<T, QueryError> {
    match tokio::time::timeout(timeout, call).await {
        Ok(result) => result.map_err(|e| QueryError::classify(e, timeout)),
        Err(_) => Err(QueryError::Timeout(timeout)),
    }
}
