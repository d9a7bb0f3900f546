#!/usr/bin/env bash
# Runs logproxy on local demo data, in the foreground, on 127.0.0.1:8080 (docs/demo.md).
#
# Usage: scripts/demo.sh                   two local ClickHouse replicas on 18123 and 18124
#        DEMO_REPLICAS=1 scripts/demo.sh   one, on 18123
# Ctrl-C stops the service. ClickHouse keeps running: `scripts/clickhouse.sh stop 18123 18124`.
#
# Steps:
#   1. scripts/clickhouse.sh start PORT...  (installs Debian's clickhouse-server and curl if missing)
#   2. cargo build --release --locked, once (DEMO_PROFILE=debug: the debug build); the steps
#      below run target/release/logproxy (target/debug/logproxy)
#   3. on each server: logproxy migrate, then, if needed, a fresh
#      logproxy seed --apps 5 --rows-per-app 5000 --hours 24 --now <one instant for all>
#      (demo-app-1..5, both log kinds)
#   4. prints a curl line for the demo key, then execs `logproxy serve --config config/default.toml`
#      with LOGPROXY__CLICKHOUSE__URL (one server) or LOGPROXY__CLICKHOUSE__URLS (comma-separated)
#
# Seeding is idempotent-ish: if demo-app-1 already holds exactly what this script seeds
# (5000 rows in each table) and its newest row is less than an hour old, the data of the
# previous run is kept. Otherwise (no rows, a half-finished or different seed, or data that
# has aged out of the 24 h window) the rows of demo-app-1..5 -- and only those -- are deleted
# and seeded again, so rows are never doubled. DEMO_RESEED=1 forces a fresh seed. If one
# server needs a new seed, all get one, counting back from the same instant (`--now`), so
# the replicas hold identical rows and answer the same bytes and ETags.
#
# Environment:
#   LOGPROXY__SERVER__BIND  listen address (default 127.0.0.1:8080 from config/default.toml)
#   LOGPROXY__SERVER__PID_FILE  the service's pid file (default target/demo.pid), for
#                           `kill -HUP "$(cat target/demo.pid)"` (reload)
#   DEMO_RESEED=1           delete and re-seed the demo apps' rows even if they are fresh
#   DEMO_REPLICAS=N         number of local ClickHouse servers (default 2), on consecutive ports
#   CLICKHOUSE_HTTP_PORT    port of the first local ClickHouse (default 18123); the demo always
#                           uses these local servers, whatever LOGPROXY__CLICKHOUSE__URL(S) say
#   DEMO_PROFILE            release (default) or debug: which build runs
#   CARGO_TARGET_DIR        where cargo builds (default target/)
#   DEMO_PREPARE_ONLY=1     steps 1-3 only, then exit (scripts/fleet.sh serves the data itself)
#   LOGPROXY__CLICKHOUSE__DATABASE / __RUNTIME_TABLE / __REQUESTS_TABLE are honoured as usual.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
. scripts/lib.sh

CONFIG=config/default.toml
DEMO_APPS=5
DEMO_KEY=lp_demo_key_1
ROWS_PER_APP=5000
FRESH_FOR_MS=3600000   # data newer than this is kept
REPLICAS="${DEMO_REPLICAS:-2}"
[[ "$REPLICAS" =~ ^[1-9][0-9]*$ ]] || die "DEMO_REPLICAS=$REPLICAS is not a positive number"

# ------------------------------------------------------------ listen address ---
BIND="${LOGPROXY__SERVER__BIND:-127.0.0.1:8080}"
PORT="${BIND##*:}"
HOST="${BIND%:*}"
[[ "$PORT" =~ ^[0-9]+$ && "$BIND" == *:* ]] || die "LOGPROXY__SERVER__BIND=$BIND is not host:port"
case "$HOST" in
    "" | 0.0.0.0) HOST=127.0.0.1 ;;
    "[::]")       HOST="[::1]" ;;
esac
if [[ "${DEMO_PREPARE_ONLY:-0}" != 1 && "$PORT" != 0 ]] && port_in_use "$PORT" "${HOST//[\[\]]/}"; then
    die "something already listens on $HOST:$PORT (a previous demo?); stop it or set LOGPROXY__SERVER__BIND"
fi

# ---------------------------------------------------------------- ClickHouse ---
ports=() urls=()
for (( i = 0; i < REPLICAS; i++ )); do
    ports+=("$(( ${CLICKHOUSE_HTTP_PORT:-18123} + i ))")
    urls+=("http://127.0.0.1:${ports[i]}")
done
scripts/clickhouse.sh start "${ports[@]}" >/dev/null
unset LOGPROXY__CLICKHOUSE__URL LOGPROXY__CLICKHOUSE__URLS   # set per command below

DB="${LOGPROXY__CLICKHOUSE__DATABASE:-default}"
RUNTIME="${LOGPROXY__CLICKHOUSE__RUNTIME_TABLE:-canvas_app_logs}"
REQUESTS="${LOGPROXY__CLICKHOUSE__REQUESTS_TABLE:-canvas_request_logs}"
for name in "$DB" "$RUNTIME" "$REQUESTS"; do
    [[ "$name" =~ ^[A-Za-z_][A-Za-z0-9_]*$ ]] || die "not a plain identifier: $name"
done

# --------------------------------------------------------------------- build ---
demo_build

# ---------------------------------------------------------------- demo data ---
for url in "${urls[@]}"; do
    LOGPROXY__CLICKHOUSE__URL="$url" "$BIN" migrate --config "$CONFIG"
done

# check_server URL: sets `why` to the reason the server's demo rows must be replaced (empty:
# keep them) and `age_min` to the age of its newest demo-app-1 row.
check_server() {
    local runtime_rows newest_ms now_ms request_rows
    read -r runtime_rows newest_ms now_ms <<<"$(sql "$1" "SELECT count(), max(timestamp_ms),
        toInt64(toUnixTimestamp(now())) * 1000 FROM $DB.$RUNTIME WHERE app_id = 'demo-app-1' FORMAT TSV")"
    request_rows="$(sql "$1" "SELECT count() FROM $DB.$REQUESTS WHERE app_id = 'demo-app-1' FORMAT TSV")"
    age_min=$(( (now_ms - newest_ms) / 60000 )) why=""
    if (( runtime_rows == 0 && request_rows == 0 )); then
        why="no demo rows yet"
    elif (( runtime_rows != ROWS_PER_APP || request_rows != ROWS_PER_APP )); then
        why="demo-app-1 has $runtime_rows runtime and $request_rows request rows, not $ROWS_PER_APP each"
    elif (( now_ms - newest_ms > FRESH_FOR_MS )); then
        why="the demo rows are $age_min minutes old"
    fi
}

reseed=""
[[ "${DEMO_RESEED:-0}" != 1 ]] || reseed="DEMO_RESEED=1"
for url in "${urls[@]}"; do
    [[ -z "$reseed" ]] || break
    check_server "$url"
    [[ -z "$why" ]] || reseed="$why on $url"
done

if [[ -n "$reseed" ]]; then
    now_ms="$(date +%s%3N)"   # one instant for every server: identical rows on each
    apps_in_list=""
    for i in $(seq 1 "$DEMO_APPS"); do apps_in_list+="${apps_in_list:+,}'demo-app-$i'"; done
    for url in "${urls[@]}"; do
        log "replacing the rows of demo-app-1..$DEMO_APPS on $url ($reseed)"
        for table in "$RUNTIME" "$REQUESTS"; do
            sql "$url" "ALTER TABLE $DB.$table DELETE WHERE app_id IN ($apps_in_list)" >/dev/null
        done
        # ALTER ... DELETE is a mutation that runs in the background: wait for it.
        for _ in $(seq 1 600); do
            pending="$(sql "$url" "SELECT count() FROM system.mutations WHERE database = '$DB'
                AND table IN ('$RUNTIME', '$REQUESTS') AND is_done = 0 FORMAT TSV")"
            (( pending == 0 )) && break
            sleep 0.1
        done
        (( pending == 0 )) || die "the delete of the old demo rows on $url did not finish within 60 s"
        LOGPROXY__CLICKHOUSE__URL="$url" "$BIN" seed --config "$CONFIG" \
            --apps "$DEMO_APPS" --rows-per-app "$ROWS_PER_APP" --hours 24 --now "$now_ms"
    done
else
    log "keeping the demo data of the previous run ($age_min minutes old; DEMO_RESEED=1 to replace it)"
fi

[[ "${DEMO_PREPARE_ONLY:-0}" != 1 ]] || exit 0

# -------------------------------------------------------------------- serve ---
if (( REPLICAS == 1 )); then
    export LOGPROXY__CLICKHOUSE__URL="${urls[0]}"
else
    LOGPROXY__CLICKHOUSE__URLS="$(IFS=,; echo "${urls[*]}")"
    export LOGPROXY__CLICKHOUSE__URLS
fi
BASE="http://$HOST:$PORT"
export LOGPROXY__SERVER__PID_FILE="${LOGPROXY__SERVER__PID_FILE:-target/demo.pid}"
mkdir -p "$(dirname "$LOGPROXY__SERVER__PID_FILE")"
cat <<EOF

logproxy on $BASE (ClickHouse ${urls[*]}, database $DB), apps demo-app-1..$DEMO_APPS, key $DEMO_KEY.
Try:

  curl -s -H 'Authorization: Bearer $DEMO_KEY' '$BASE/v1/apps/demo-app-1/logs?hours=24&limit=5'

The API reference page: $BASE/docs ("Authorize" with $DEMO_KEY, then "Try it out").
Also: $BASE/healthz  $BASE/readyz  $BASE/metrics  $BASE/openapi.json
Reload config/default.toml: kill -HUP "\$(cat $LOGPROXY__SERVER__PID_FILE)"
Ctrl-C stops the service (ClickHouse keeps running: scripts/clickhouse.sh stop ${ports[*]}).

EOF
exec "$BIN" serve --config "$CONFIG"
