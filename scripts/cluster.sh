#!/usr/bin/env bash
# A local 2-shard ClickHouse cluster: two servers of scripts/clickhouse.sh that both know the
# cluster from a `remote_servers` config, for logproxy's sharded mode (docs/replicas-and-shards.md).
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
# `seed` builds logproxy (DEMO_PROFILE as for scripts/demo.sh), writes
# .clickhouse/cluster-<A>-<B>.toml (logproxy's config for cluster `logs`: the API on
# 127.0.0.1:CLUSTER_PORT, /metrics and /readyz on the admin listener 127.0.0.1:CLUSTER_ADMIN_PORT,
# a pid file beside it, [clickhouse] cluster and [[clickhouse.shards]], the limits of
# config/default.toml and its demo tenant, whose key lp_demo_key_1 reads the seeded apps),
# runs `logproxy migrate` (local and Distributed tables on both servers) and
# `logproxy seed --apps 40 --rows-per-app 2000` (inserted through the Distributed tables, so
# ClickHouse itself puts each app on its shard), then prints how many rows and apps each
# shard holds, the command that serves the cluster and a curl line for an app of each shard.
#
# Environment: CLUSTER_PORT (8180) and CLUSTER_ADMIN_PORT (9180), logproxy's listeners;
# CLUSTER_TCP_PORT, the first server's native port (default: HTTP port A + 10000), the
# second's is the next.
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
if (( A + 10000 <= 65535 )); then TCP_A=$(( A + 10000 )); else TCP_A=$(( A - 10000 )); fi
TCP_A="${CLUSTER_TCP_PORT:-$TCP_A}" TCP_B=$(( ${CLUSTER_TCP_PORT:-$TCP_A} + 1 ))
XML="$ROOT/.clickhouse/cluster-$A-$B.xml"
TOML="$ROOT/.clickhouse/cluster-$A-$B.toml"
PORT="${CLUSTER_PORT:-8180}" ADMIN_PORT="${CLUSTER_ADMIN_PORT:-9180}"
APPS=40 KEY=lp_demo_key_1

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
        shard 1 "$TCP_A"
        shard 1 "$TCP_B"
        echo '    </logs>'
        echo '    <logs_2_1>'
        shard 2 "$TCP_A"
        shard 1 "$TCP_B"
        echo '    </logs_2_1>'
        echo '  </remote_servers>'
        echo '</yandex>'
    } >"$XML"
}

write_toml() {
    local apps="" i
    for (( i = 1; i <= APPS; i++ )); do apps+="${apps:+, }\"demo-app-$i\""; done
    {
        echo "# Written by scripts/cluster.sh: logproxy on the local cluster \`logs\`."
        echo "[server]"
        echo "bind = \"127.0.0.1:$PORT\""
        echo "admin_bind = \"127.0.0.1:$ADMIN_PORT\"  # /metrics and /readyz (shard layout) only here"
        echo "pid_file = \"${TOML%.toml}.pid\""
        echo "[clickhouse]"
        echo "cluster = \"logs\""
        echo "[[clickhouse.shards]]"
        echo "urls = [\"http://127.0.0.1:$A\"]"
        echo "[[clickhouse.shards]]"
        echo "urls = [\"http://127.0.0.1:$B\"]"
        # The limits and the demo tenant of the default config; the tenant reads every seeded app.
        sed -n '/^\[rate_limit\]/,$p' "$ROOT/config/default.toml" | grep -v '^\[clickhouse\]' \
            | sed "s/^apps = \[.*\]\$/apps = [$apps]/"
    } >"$TOML"
    grep -q "\"demo-app-$APPS\"" "$TOML" || die "no tenant apps line to rewrite in config/default.toml"
}

case "$cmd" in
    start)
        write_xml
        CLICKHOUSE_EXTRA_CONFIG="$XML" CLICKHOUSE_TCP_PORT="$TCP_A" \
            "$SCRIPTS/clickhouse.sh" start "$A" "$B"
        ;;
    stop | status)
        "$SCRIPTS/clickhouse.sh" "$cmd" "${args[@]}" "$A" "$B"
        ;;
    seed)
        "$0" start "$A" "$B" >/dev/null
        write_toml
        cd "$ROOT"
        demo_build
        unset LOGPROXY__CLICKHOUSE__URL LOGPROXY__CLICKHOUSE__URLS LOGPROXY__CLICKHOUSE__SHARDS
        "$BIN" migrate --config "$TOML"
        seeded="$(sql "http://127.0.0.1:$A" "SELECT count() FROM canvas_app_logs WHERE app_id = 'demo-app-1'")"
        if (( seeded == 0 )); then
            "$BIN" seed --config "$TOML" --apps "$APPS" --rows-per-app 2000
        else
            log "already seeded (demo-app-1 has $seeded rows); \`$0 stop --purge $A $B\` starts afresh"
        fi
        try=""
        for port in "$A" "$B"; do
            read -r rows apps first <<<"$(sql "http://127.0.0.1:$port" "SELECT count(), uniqExact(app_id),
                min(app_id) FROM canvas_app_logs_local FORMAT TSV")"
            log "shard on $port: $rows runtime rows of $apps apps (e.g. $first)"
            try+="  curl -s -H 'Authorization: Bearer $KEY' 'http://127.0.0.1:$PORT/v1/apps/$first/logs?hours=24&limit=5'"$'\n'
        done
        log "serve it: $BIN serve --config $TOML"
        cat <<INFO >&2
  on http://127.0.0.1:$PORT, key $KEY for demo-app-1..$APPS; /readyz and /metrics on 127.0.0.1:$ADMIN_PORT;
  reload: kill -HUP "\$(cat ${TOML%.toml}.pid)". Then an app of each shard:
$try
INFO
        ;;
    *) usage ;;
esac
