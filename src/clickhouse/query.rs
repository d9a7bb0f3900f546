//! Fixed SQL templates. Values arrive only through `bind` (escaped by the `clickhouse` crate),
//! table names only as validated identifiers from configuration.

/// One app's rows in a window, after a position, newest first: bound are the table, the
/// app, the window's start (inclusive) and end (exclusive), the position's timestamp twice
/// and its tie, and the limit. Rows of one millisecond are ordered by `tie` (a hash of the
/// other columns) and then the columns, so the order is total: a page is the same bytes
/// however ClickHouse reads the parts, a page refreshed by its newest rows only
/// (`cache.delta_refresh`) can be byte-identical to a full query, and a cursor's position
/// is a bound the primary key `(app_id, timestamp_ms)` prunes by: `timestamp_ms <= ts` reads
/// no part past it, and the tuple comparison `(ts, tie) >= (x, y)` is written out, which
/// ClickHouse would not use for the index. Without a position: `i64::MAX` and 0.
pub(crate) const RUNTIME_LOGS: &str = "SELECT timestamp_ms, level, message, route_path, \
     request_id, sipHash64(level, message, route_path, request_id) AS tie FROM ? \
     WHERE app_id = ? AND timestamp_ms >= ? AND timestamp_ms < ? \
     AND timestamp_ms <= ? AND (timestamp_ms < ? OR tie >= ?) \
     ORDER BY timestamp_ms DESC, tie, level, message, route_path, request_id LIMIT ?";

/// As `RUNTIME_LOGS`, keeping only rows whose lower-cased level is in a bound array (bound
/// last but the limit).
pub(crate) const RUNTIME_LOGS_BY_LEVEL: &str = "SELECT timestamp_ms, level, message, \
     route_path, request_id, sipHash64(level, message, route_path, request_id) AS tie FROM ? \
     WHERE app_id = ? AND timestamp_ms >= ? AND timestamp_ms < ? \
     AND timestamp_ms <= ? AND (timestamp_ms < ? OR tie >= ?) AND has(?, lower(level)) \
     ORDER BY timestamp_ms DESC, tie, level, message, route_path, request_id LIMIT ?";

/// As `RUNTIME_LOGS`, from the request table.
pub(crate) const REQUEST_LOGS: &str = "SELECT timestamp_ms, method, path, status_code, \
     duration_ms, user_agent, ip, \
     sipHash64(method, path, status_code, duration_ms, user_agent, ip) AS tie FROM ? \
     WHERE app_id = ? AND timestamp_ms >= ? AND timestamp_ms < ? \
     AND timestamp_ms <= ? AND (timestamp_ms < ? OR tie >= ?) \
     ORDER BY timestamp_ms DESC, tie, method, path, status_code, duration_ms, user_agent, ip \
     LIMIT ?";

/// How many of two tables the current database holds: a probe that touches the tables'
/// metadata without running a query on them (a view's query may be slow).
pub(crate) const PROBE: &str = "SELECT toUInt64(count()) FROM system.tables \
     WHERE database = currentDatabase() AND name IN (?, ?)";

/// A cluster's shards as this server knows them (`remote_servers`): each shard's weight, in
/// shard order.
pub(crate) const CLUSTER_LAYOUT: &str = "SELECT toUInt32(shard_num), toUInt32(any(shard_weight)) \
     FROM system.clusters WHERE cluster = ? GROUP BY shard_num ORDER BY shard_num";

/// The Distributed table over a cluster's local tables (CONTRACT.md §13): table, local
/// table, cluster, database, local table. Rows go to the shard ClickHouse's rule picks.
pub(crate) const CREATE_DISTRIBUTED_TABLE: &str =
    "CREATE TABLE IF NOT EXISTS ? AS ? ENGINE = Distributed(?, ?, ?, sipHash64(app_id))";

/// Stops a query by id, without waiting for it to end.
pub(crate) const KILL_QUERY: &str = "KILL QUERY WHERE query_id = ? ASYNC";

pub(crate) const CREATE_DATABASE: &str = "CREATE DATABASE IF NOT EXISTS ?";

/// CONTRACT.md §3, portable from ClickHouse 18.16 to current releases.
pub(crate) const CREATE_RUNTIME_TABLE: &str = "CREATE TABLE IF NOT EXISTS ? (
    app_id       String,
    timestamp_ms Int64,
    level        String,
    message      String,
    route_path   String,
    request_id   String
) ENGINE = MergeTree
PARTITION BY toYYYYMMDD(toDateTime(intDiv(timestamp_ms, 1000)))
ORDER BY (app_id, timestamp_ms)";

pub(crate) const CREATE_REQUESTS_TABLE: &str = "CREATE TABLE IF NOT EXISTS ? (
    app_id       String,
    timestamp_ms Int64,
    method       String,
    path         String,
    status_code  UInt16,
    duration_ms  Float64,
    user_agent   String,
    ip           String
) ENGINE = MergeTree
PARTITION BY toYYYYMMDD(toDateTime(intDiv(timestamp_ms, 1000)))
ORDER BY (app_id, timestamp_ms)";

/// The stored spellings a normalized level matches (`warn` also finds `warning`).
pub(crate) fn level_spellings(level: &str) -> Vec<&str> {
    match level {
        "warn" => vec!["warn", "warning"],
        other => vec![other],
    }
}
