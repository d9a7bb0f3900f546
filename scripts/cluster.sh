#!/usr/bin/env bash
# A local 2-shard ClickHouse cluster: two servers of scripts/clickhouse.sh that both know the
# cluster from a `remote_servers` config, for logproxy's sharded mode (CONTRACT.md §13).
#
# Usage: scripts/cluster.sh start | stop [--purge] | status | seed  [HTTP_PORT_A HTTP_PORT_B]
#
#   scripts/cluster.sh start        # shards on 18133 and 18134 (native ports 28133, 28134)
#   scripts/cluster.sh seed         # logproxy migrate + seed through the Distributed tables
#   scripts/cluster.sh stop         # stop both (--purge: delete their folders too)
#
# `start` writes .clickhouse/cluster-<A>-<B>.xml and starts both servers with it (merged into
# each one's config.d/). It names two clusters of the same servers:
#   logs      shard 1 = A (weight 1), shard 2 = B (weight 1)
#   logs_2_1  shard 1 = A (weight 2), shard 2 = B (weight 1)
# `seed` builds the release binary, writes .clickhouse/cluster-<A>-<B>.toml (logproxy's
# config for cluster `logs`: the API on 127.0.0.1:8080, /metrics and /readyz on the admin
# listener 127.0.0.1:9464, [clickhouse] cluster and [[clickhouse.shards]], plus the demo
# tenant of config/default.toml), runs `logproxy migrate` (local and Distributed tables on
# both servers) and `logproxy seed --apps 40 --rows-per-app 2000` (inserted through the
# Distributed tables, so ClickHouse itself puts each app on its shard), then prints how many
# rows each shard holds and the command that serves the cluster.
set -euo pipefail
SCRIPTS="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$SCRIPTS/.." && pwd)"
. "$SCRIPTS/lib.sh"

usage() { echo "usage: $0 start | stop [--purge] | status | seed  [HTTP_PORT_A HTTP_PORT_B]" >&2; exit 2; }
cmd="${1:-}"
shift || true
args=() ports=()
for arg in "$@"; do
    case "$arg" in
        --*) args+=("$arg") ;;
        *) ports+=("$arg") ;;
    esac
done
(( ${#ports[@]} == 0 )) && ports=(18133 18134)
(( ${#ports[@]} == 2 )) || usage
A="${ports[0]}" B="${ports[1]}"
tcp() { if (( $1 + 10000 <= 65535 )); then echo $(( $1 + 10000 )); else echo $(( $1 - 10000 )); fi; }
XML="$ROOT/.clickhouse/cluster-$A-$B.xml"
TOML="$ROOT/.clickhouse/cluster-$A-$B.toml"

write_xml() {
    local shard
    shard() { # weight, tcp port
        printf '      <shard><weight>%s</weight><internal_replication>false</internal_replication>\n' "$1"
        printf '        <replica><host>127.0.0.1</host><port>%s</port></replica></shard>\n' "$2"
    }
    mkdir -p "$(dirname "$XML")"
    {
        echo '<?xml version="1.0"?>'
        echo "<!-- Written by scripts/cluster.sh: the local cluster's shards, by native port. -->"
        echo '<yandex>'
        echo '  <remote_servers>'
        echo '    <logs>'
        shard 1 "$(tcp "$A")"
        shard 1 "$(tcp "$B")"
        echo '    </logs>'
        echo '    <logs_2_1>'
        shard 2 "$(tcp "$A")"
        shard 1 "$(tcp "$B")"
        echo '    </logs_2_1>'
        echo '  </remote_servers>'
        echo '</yandex>'
    } >"$XML"
}

write_toml() {
    {
        echo "# Written by scripts/cluster.sh: logproxy on the local cluster \`logs\`."
        echo "[server]"
        echo "bind = \"127.0.0.1:8080\""
        echo "admin_bind = \"127.0.0.1:9464\"  # /metrics and /readyz (shard layout) only here"
        echo "[clickhouse]"
        echo "cluster = \"logs\""
        echo "[[clickhouse.shards]]"
        echo "urls = [\"http://127.0.0.1:$A\"]"
        echo "[[clickhouse.shards]]"
        echo "urls = [\"http://127.0.0.1:$B\"]"
        # The demo tenant and limits of the default config.
        sed -n '/^\[rate_limit\]/,$p' "$ROOT/config/default.toml" | grep -v '^\[clickhouse\]'
    } >"$TOML"
}

case "$cmd" in
    start)
        write_xml
        CLICKHOUSE_EXTRA_CONFIG="$XML" CLICKHOUSE_TCP_PORT="$(tcp "$A")" \
            "$SCRIPTS/clickhouse.sh" start "$A" "$B"
        ;;
    stop | status)
        "$SCRIPTS/clickhouse.sh" "$cmd" "${args[@]}" "$A" "$B"
        ;;
    seed)
        "$0" start "$A" "$B" >/dev/null
        write_toml
        need_cargo
        (cd "$ROOT" && cargo build --release --locked)
        BIN="${CARGO_TARGET_DIR:-$ROOT/target}/release/logproxy"
        unset LOGPROXY__CLICKHOUSE__URL LOGPROXY__CLICKHOUSE__URLS LOGPROXY__CLICKHOUSE__SHARDS
        "$BIN" migrate --config "$TOML"
        "$BIN" seed --config "$TOML" --apps 40 --rows-per-app 2000
        for port in "$A" "$B"; do
            rows="$(sql "http://127.0.0.1:$port" "SELECT count() FROM canvas_app_logs_local")"
            apps="$(sql "http://127.0.0.1:$port" "SELECT uniqExact(app_id) FROM canvas_app_logs_local")"
            log "shard on $port: $rows runtime rows of $apps apps"
        done
        log "serve it: $BIN serve --config $TOML (/readyz and /metrics on 127.0.0.1:9464)"
        ;;
    *) usage ;;
esac
