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
use crate::domain::{LogQuery, LogType, Position};

const DDL_TIMEOUT: Duration = Duration::from_secs(30);

/// Which rows of an app a log query reads: `[start_ms, end_ms)` (no upper bound without
/// `end_ms`), and after `after` in the order of `RUNTIME_LOGS` when given.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Bounds {
    pub start_ms: i64,
    pub end_ms: Option<i64>,
    pub after: Option<Position>,
}

#[derive(Clone)]
pub struct ChClient {
    client: Client,
    /// The tables queries read: the configured ones, or on a cluster the shard's local ones.
    runtime_table: String,
    requests_table: String,
    /// The configured tables: what writers insert into (on a cluster, the Distributed ones).
    runtime_writes: String,
    requests_writes: String,
    database: String,
    /// With `clickhouse.shards`: the cluster's name in `remote_servers`.
    cluster: Option<String>,
    query_timeout: Duration,
}

impl ChClient {
    /// A client of the first replica (`clickhouse.url`, the first of `urls`, or of the
    /// first shard).
    pub fn new(settings: &ClickHouseSettings) -> Self {
        Self::with_url(settings, &settings.all_urls()[0])
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
        // On a cluster, an insert through a Distributed table returns once every shard has
        // its rows (seeding, tests), not when ClickHouse has queued them.
        let client = match settings.is_cluster() {
            true => client.with_setting("insert_distributed_sync", "1"),
            false => client,
        };
        Self {
            client,
            runtime_table: settings.read_table(&settings.runtime_table),
            requests_table: settings.read_table(&settings.requests_table),
            runtime_writes: settings.runtime_table.clone(),
            requests_writes: settings.requests_table.clone(),
            database: settings.database.clone(),
            cluster: settings.is_cluster().then(|| settings.cluster.clone()),
            query_timeout,
        }
    }

    /// The underlying client, for tests and tools that need a query of their own.
    pub fn raw(&self) -> &Client {
        &self.client
    }

    /// The first `limit` rows of one app in `bounds`, newest first, handed to `sink` as they
    /// are decoded. `query_id` names the query on the server.
    pub async fn logs(
        &self,
        q: &LogQuery,
        bounds: &Bounds,
        limit: u32,
        query_id: &str,
        sink: &mut impl LogSink,
    ) -> Result<(), QueryError> {
        let (table, template) = match (q.key.log_type, q.key.level.is_some()) {
            (LogType::Runtime, false) => (&self.runtime_table, RUNTIME_LOGS),
            (LogType::Runtime, true) => (&self.runtime_table, RUNTIME_LOGS_BY_LEVEL),
            (LogType::Requests, _) => (&self.requests_table, REQUEST_LOGS),
        };
        let (after_ts, after_tie) = bounds.after.map_or((i64::MAX, 0), |p| (p.ts, p.tie));
        let mut query = self
            .client
            .query(template)
            .bind(Identifier(table))
            .bind(&*q.key.app_id)
            .bind(bounds.start_ms)
            .bind(bounds.end_ms.unwrap_or(i64::MAX))
            .bind(after_ts)
            .bind(after_ts)
            .bind(after_tie);
        if let (LogType::Runtime, Some(level)) = (q.key.log_type, q.key.level.as_deref()) {
            query = query.bind(level_spellings(level));
        }
        let query = query.bind(limit);
        match q.key.log_type {
            LogType::Runtime => {
                self.each::<RuntimeEntryRow<'static>>(query, query_id, |row| {
                    sink.entry(row.timestamp_ms, row.tie, &row)
                })
                .await
            }
            LogType::Requests => {
                self.each::<RequestEntryRow<'static>>(query, query_id, |row| {
                    sink.entry(row.timestamp_ms, row.tie, &row)
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

    /// The cluster's shards as this server's `system.clusters` has them: their weights, in
    /// shard order (empty when it does not know the cluster). `None` without a cluster.
    pub async fn cluster_layout(&self, timeout: Duration) -> Result<Option<Vec<u32>>, QueryError> {
        let Some(cluster) = &self.cluster else {
            return Ok(None);
        };
        let query = self.client.query(CLUSTER_LAYOUT).bind(cluster);
        let shards = bounded(timeout, query.fetch_all::<(u32, u32)>()).await?;
        Ok(Some(shards.into_iter().map(|(_, weight)| weight).collect()))
    }

    /// Asks the server to stop the query `query_id` (and not to wait for it to end).
    pub async fn kill_query(&self, query_id: &str, timeout: Duration) -> Result<(), QueryError> {
        let kill = self.client.query(KILL_QUERY).bind(query_id);
        bounded(timeout, kill.execute()).await
    }

    /// Creates the database and both tables; safe to run again. On a cluster, the tables
    /// of §3 are this server's local tables (`<table>_local`), and `<table>` is a Distributed
    /// table over them.
    pub async fn migrate(&self) -> Result<(), QueryError> {
        let system = self.client.clone().with_database("system");
        let create_db = system
            .query(CREATE_DATABASE)
            .bind(Identifier(&self.database));
        bounded(DDL_TIMEOUT, create_db.execute()).await?;
        let tables = [
            (
                CREATE_RUNTIME_TABLE,
                &self.runtime_table,
                &self.runtime_writes,
            ),
            (
                CREATE_REQUESTS_TABLE,
                &self.requests_table,
                &self.requests_writes,
            ),
        ];
        for (ddl, local, _) in tables {
            let query = self.client.query(ddl).bind(Identifier(local));
            bounded(DDL_TIMEOUT, query.execute()).await?;
        }
        if let Some(cluster) = &self.cluster {
            for (_, local, distributed) in tables {
                let query = self
                    .client
                    .query(CREATE_DISTRIBUTED_TABLE)
                    .bind(Identifier(distributed))
                    .bind(Identifier(local))
                    .bind(Identifier(cluster))
                    .bind(Identifier(&self.database))
                    .bind(Identifier(local));
                bounded(DDL_TIMEOUT, query.execute()).await?;
            }
        }
        Ok(())
    }

    /// Inserts into the configured runtime table (on a cluster, the Distributed one).
    pub async fn insert_runtime(&self, rows: &[RuntimeRow]) -> Result<(), QueryError> {
        self.insert(&self.runtime_writes, rows).await
    }

    pub async fn insert_requests(&self, rows: &[RequestRow]) -> Result<(), QueryError> {
        self.insert(&self.requests_writes, rows).await
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
