#!/usr/bin/env bash
# Runs logproxy on local demo data, in the foreground, on 127.0.0.1:8080.
#
# Usage: scripts/demo.sh          (Ctrl-C stops the service; ClickHouse keeps running,
#                                  `scripts/clickhouse.sh stop` stops it)
#
# Steps:
#   1. scripts/clickhouse.sh start  (installs Debian's clickhouse-server and curl if missing)
#   2. cargo build --release --locked, once; the steps below run target/release/logproxy
#   3. logproxy migrate
#   4. logproxy seed --apps 5 --rows-per-app 5000 --hours 24  (demo-app-1..5, both log kinds)
#   5. prints a curl line for the demo key, then execs `logproxy serve --config config/default.toml`
#
# Seeding is idempotent-ish: if demo-app-1 already holds exactly what this script seeds
# (5000 rows in each table) and its newest row is less than an hour old, the data of the
# previous run is kept. Otherwise (no rows, a half-finished or different seed, or data that
# has aged out of the 24 h window) the rows of demo-app-1..5 -- and only those -- are deleted
# and seeded again, so rows are never doubled. DEMO_RESEED=1 forces a fresh seed.
#
# Environment:
#   LOGPROXY__SERVER__BIND  listen address (default 127.0.0.1:8080 from config/default.toml)
#   DEMO_RESEED=1           delete and re-seed the demo apps' rows even if they are fresh
#   CLICKHOUSE_HTTP_PORT    port of the local ClickHouse (default 18123); the demo always uses
#                           that local server and sets LOGPROXY__CLICKHOUSE__URL to it
#   LOGPROXY__CLICKHOUSE__DATABASE / __RUNTIME_TABLE / __REQUESTS_TABLE are honoured as usual.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

CONFIG=config/default.toml
BIN=target/release/logproxy
DEMO_APPS=5
DEMO_KEY=lp_demo_key_1
ROWS_PER_APP=5000
FRESH_FOR_MS=3600000   # data newer than this is kept

log() { echo "demo.sh: $*" >&2; }
die() { log "$*"; exit 1; }

as_root() {
    if [[ "$(id -u)" -eq 0 ]]; then "$@"
    elif command -v sudo >/dev/null 2>&1; then sudo "$@"
    else die "need root (or sudo) to run: $*"
    fi
}

# ------------------------------------------------------------ listen address ---
BIND="${LOGPROXY__SERVER__BIND:-127.0.0.1:8080}"
PORT="${BIND##*:}"
HOST="${BIND%:*}"
[[ "$PORT" =~ ^[0-9]+$ && "$BIND" == *:* ]] || die "LOGPROXY__SERVER__BIND=$BIND is not host:port"
case "$HOST" in
    "" | 0.0.0.0) HOST=127.0.0.1 ;;
    "[::]")       HOST="[::1]" ;;
esac
if [[ "$PORT" != 0 ]] && timeout 2 bash -c 'exec 3<>"/dev/tcp/$0/$1"' "${HOST//[\[\]]/}" "$PORT" 2>/dev/null; then
    die "something already listens on $HOST:$PORT (a previous demo?); stop it or set LOGPROXY__SERVER__BIND"
fi

# ---------------------------------------------------------------- ClickHouse ---
scripts/clickhouse.sh start >/dev/null
CH_URL="http://127.0.0.1:${CLICKHOUSE_HTTP_PORT:-18123}"
export LOGPROXY__CLICKHOUSE__URL="$CH_URL"

DB="${LOGPROXY__CLICKHOUSE__DATABASE:-default}"
RUNTIME="${LOGPROXY__CLICKHOUSE__RUNTIME_TABLE:-canvas_app_logs}"
REQUESTS="${LOGPROXY__CLICKHOUSE__REQUESTS_TABLE:-canvas_request_logs}"
for name in "$DB" "$RUNTIME" "$REQUESTS"; do
    [[ "$name" =~ ^[A-Za-z_][A-Za-z0-9_]*$ ]] || die "not a plain identifier: $name"
done

# One SQL statement through the HTTP interface; prints the result (TSV).
sql() { curl -fsS --max-time 60 "$CH_URL/" --data-binary "$1"; }

# --------------------------------------------------------------------- build ---
if ! command -v cargo >/dev/null 2>&1 && [[ -f "$HOME/.cargo/env" ]]; then
    # shellcheck disable=SC1091
    . "$HOME/.cargo/env"
fi
command -v cargo >/dev/null 2>&1 || die "cargo not found: install Rust (https://rustup.rs)"
if ! command -v cc >/dev/null 2>&1; then
    command -v apt-get >/dev/null 2>&1 || die "no C linker (cc) found; install gcc"
    log "installing a linker (gcc, libc6-dev) via apt-get"
    as_root env DEBIAN_FRONTEND=noninteractive apt-get update -q
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends gcc libc6-dev
fi
log "cargo build --release (a few minutes the first time)"
cargo build --release --locked
[[ -x "$BIN" ]] || die "$BIN was not built"

# ---------------------------------------------------------------- demo data ---
"$BIN" migrate --config "$CONFIG"

apps_in_list=""
for i in $(seq 1 "$DEMO_APPS"); do apps_in_list+="${apps_in_list:+,}'demo-app-$i'"; done

stats="$(sql "SELECT count(), max(timestamp_ms), toInt64(toUnixTimestamp(now())) * 1000
    FROM $DB.$RUNTIME WHERE app_id = 'demo-app-1' FORMAT TSV")"
read -r runtime_rows newest_ms now_ms <<<"$stats"
request_rows="$(sql "SELECT count() FROM $DB.$REQUESTS WHERE app_id = 'demo-app-1' FORMAT TSV")"

reseed=""
if [[ "${DEMO_RESEED:-0}" == 1 ]]; then
    reseed="DEMO_RESEED=1"
elif (( runtime_rows == 0 && request_rows == 0 )); then
    reseed="no demo rows yet"
elif (( runtime_rows != ROWS_PER_APP || request_rows != ROWS_PER_APP )); then
    reseed="demo-app-1 has $runtime_rows runtime and $request_rows request rows, not $ROWS_PER_APP each"
elif (( now_ms - newest_ms > FRESH_FOR_MS )); then
    reseed="the demo rows are $(( (now_ms - newest_ms) / 60000 )) minutes old"
fi

if [[ -n "$reseed" ]]; then
    if (( runtime_rows > 0 || request_rows > 0 )); then
        log "deleting the rows of demo-app-1..$DEMO_APPS ($reseed)"
        for table in "$RUNTIME" "$REQUESTS"; do
            sql "ALTER TABLE $DB.$table DELETE WHERE app_id IN ($apps_in_list)" >/dev/null
        done
        # ALTER ... DELETE is a mutation that runs in the background: wait for it.
        for _ in $(seq 1 600); do
            pending="$(sql "SELECT count() FROM system.mutations WHERE database = '$DB'
                AND table IN ('$RUNTIME', '$REQUESTS') AND is_done = 0 FORMAT TSV")"
            (( pending == 0 )) && break
            sleep 0.1
        done
        (( pending == 0 )) || die "the delete of the old demo rows did not finish within 60 s"
    else
        log "seeding ($reseed)"
    fi
    "$BIN" seed --config "$CONFIG" --apps "$DEMO_APPS" --rows-per-app "$ROWS_PER_APP" --hours 24
else
    log "keeping the demo data of the previous run ($(( (now_ms - newest_ms) / 60000 )) minutes old; DEMO_RESEED=1 to replace it)"
fi

# -------------------------------------------------------------------- serve ---
BASE="http://$HOST:$PORT"
cat <<EOF

logproxy on $BASE (ClickHouse $CH_URL, database $DB), apps demo-app-1..$DEMO_APPS, key $DEMO_KEY.
Try:

  curl -s -H 'Authorization: Bearer $DEMO_KEY' '$BASE/v1/apps/demo-app-1/logs?hours=24&limit=5'

Also: $BASE/healthz  $BASE/readyz  $BASE/metrics  $BASE/openapi.json
Ctrl-C stops the service (ClickHouse keeps running: scripts/clickhouse.sh stop).

EOF
exec "$BIN" serve --config "$CONFIG"
