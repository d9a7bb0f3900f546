#!/usr/bin/env bash
# What a new user does with README.md, as a test (docs/contributing/testing.md, "The README
# check"): starts scripts/demo.sh as README says, runs the commands README.md and docs/ show
# (scripts/doc-commands.py), checks what the demo promised, then scripts/cluster.sh seed and
# scripts/fleet.sh the same way. Run by scripts/test.sh after the tests.
#
# The demo runs the debug build (DEMO_PROFILE=debug: `cargo test` has built it; the release
# build takes minutes on 2 cores) on a free port, in a database of its own on the test
# ClickHouse servers (CLICKHOUSE_HTTP_PORT, default 18123, and the next), with a pid file of
# its own; the commands run with these put in place of http://127.0.0.1:8080 and
# target/demo.pid. The database is dropped on exit.
#
# Environment: README_CHECK_CLUSTER=0 / README_CHECK_FLEET=0 leave the cluster / fleet out;
# README_CHECK_CLUSTER_PORTS ("18133 18134"): the cluster's ClickHouse servers, started and
# stopped here unless they answer already (CLUSTER_TCP_PORT: their native ports);
# README_CHECK_PORT_BASE: the services listen on it and the next 11 ports (default: free ports).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
. scripts/lib.sh

ensure_packages curl jq
export DEMO_PROFILE="${DEMO_PROFILE:-debug}" CLICKHOUSE_HTTP_PORT="${CLICKHOUSE_HTTP_PORT:-18123}"
CH="http://127.0.0.1:$CLICKHOUSE_HTTP_PORT" CH2="http://127.0.0.1:$(( CLICKHOUSE_HTTP_PORT + 1 ))"
DB="lp_readme_$(date +%s)_$$"
work="$(mktemp -d)" pids=() cluster_started=()
cleanup() {
    local status=$? pid
    for pid in "${pids[@]}"; do stop_pid "$pid"; done
    (( ${#cluster_started[@]} == 0 )) || scripts/cluster.sh stop --purge "${cluster_started[@]}" >/dev/null || true
    for url in "$CH" "$CH2"; do sql "$url" "DROP DATABASE IF EXISTS $DB" >/dev/null || true; done
    if (( status != 0 )); then
        for f in "$work"/*.log; do [[ -s "$f" ]] && { log "--- $f (last lines)"; tail -n 15 "$f" >&2; }; done
    fi
    rm -rf "$work"
    exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
check() { log "ok: $*"; }
port() { if [[ -n "${README_CHECK_PORT_BASE:-}" ]]; then echo $(( README_CHECK_PORT_BASE + $1 )); else free_port; fi; }

# -------------------------------------------------------------- the demo ---
port="$(port 0)" pid_file="$work/demo.pid"
BASE="http://127.0.0.1:$port" started=$SECONDS
LOGPROXY__SERVER__BIND="127.0.0.1:$port" LOGPROXY__CLICKHOUSE__DATABASE="$DB" \
LOGPROXY__SERVER__PID_FILE="$pid_file" scripts/demo.sh >"$work/demo.log" 2>&1 &
demo=$!
pids+=("$demo")
wait_http "$BASE/readyz" 600 "$demo" || die "the demo did not get ready"
check "the demo answers /readyz $(( SECONDS - started )) s after scripts/demo.sh"
[[ "$(cat "$pid_file")" == "$demo" ]] || die "$pid_file does not hold the demo's pid $demo"

line="$(grep -m1 "curl -s -H 'Authorization: Bearer" "$work/demo.log")" || die "the demo printed no curl line"
[[ "$line" == *"$BASE/v1/apps/demo-app-1/logs"* ]] || die "the demo's curl line names another address: $line"
[[ "$(bash -c "$line" | jq '.entries | length')" == 5 ]] || die "the demo's curl line did not get 5 entries"
check "the curl line the demo printed: 5 entries"
grep -qF "$BASE/docs" "$work/demo.log" || die "the demo does not print the page at /docs"
[[ "$(curl -s -o /dev/null -w '%{http_code} %{content_type}' "$BASE/docs")" == "200 text/html"* ]] \
    || die "$BASE/docs is not an HTML page"
check "$BASE/docs is the page"

rows() { sql "$1" "SELECT count(), sum(cityHash64(app_id, timestamp_ms, level, message, route_path,
    request_id)) FROM $DB.canvas_app_logs FORMAT TSV"; }
[[ "$(rows "$CH")" == "$(rows "$CH2")" && "$(rows "$CH")" != 0* ]] || die "the two replicas hold different rows"
check "both replicas hold the same rows ($(rows "$CH" | cut -f1) runtime rows)"

columns() { sql "$CH" "SELECT name, type FROM system.columns WHERE database = '$DB' AND table = '$1'
    FORMAT TSV" | tr '\t' ' '; }
shown() { awk -v t="$1" '$0 ~ "CREATE TABLE IF NOT EXISTS " t " " {on=1; next} on && /^\)/ {exit}
    on {gsub(/,$/, ""); print $1, $2}' docs/schema.md; }
for table in canvas_app_logs canvas_request_logs; do
    [[ -n "$(shown "$table")" && "$(columns "$table")" == "$(shown "$table")" ]] \
        || die "docs/schema.md shows other columns of $table than migrate made: $(columns "$table" | xargs)"
done
check "docs/schema.md shows the columns logproxy migrate makes"

# docs/image.md's commands need a container engine: scripts/image-check.sh checks the image.
pages=()
for page in README.md docs/*.md docs/contributing/*.md; do [[ "$page" == docs/image.md ]] || pages+=("$page"); done
python3 scripts/doc-commands.py --replace "http://127.0.0.1:8080=$BASE" \
    --replace "target/demo.pid=$pid_file" "${pages[@]}" \
    || die "a command README.md or docs/ show did not do what the page says"
reloads="$(curl -s "$BASE/metrics" | grep '^logproxy_config_reloads_total{result="ok"}' | cut -d' ' -f2)"
[[ "$reloads" -ge 1 ]] || die "the reload command of docs/operations.md reloaded nothing"
check "the reload command reloaded the demo"
kill -TERM "$(cat "$pid_file")"
wait "$demo" || die "the demo exited with status $? on SIGTERM"
pids=()
[[ ! -e "$pid_file" ]] || die "the demo left its pid file behind"
check "SIGTERM through the pid file: exit 0, the pid file removed"

# ------------------------------------------------------------- a cluster ---
if [[ "${README_CHECK_CLUSTER:-1}" != 0 ]]; then
    read -r A B <<<"${README_CHECK_CLUSTER_PORTS:-18133 18134}"
    for p in "$A" "$B"; do scripts/clickhouse.sh status "$p" >/dev/null || cluster_started=("$A" "$B"); done
    CLUSTER_PORT="$(port 1)" CLUSTER_ADMIN_PORT="$(port 2)" \
        scripts/cluster.sh seed "$A" "$B" >"$work/cluster.log" 2>&1 || die "scripts/cluster.sh seed failed"
    serve="$(sed -n 's/^cluster.sh: serve it: //p' "$work/cluster.log")"
    [[ -n "$serve" ]] || die "scripts/cluster.sh printed no serve line"
    $serve >"$work/cluster-serve.log" 2>&1 &
    pids+=("$!")
    cbase="$(grep -o -m1 "http://127.0.0.1:[0-9]*" <<<"$(grep '^  on http' "$work/cluster.log")")"
    wait_http "${cbase}/healthz" 30 "${pids[-1]}" || die "the cluster's logproxy did not start"
    mapfile -t tries < <(grep "^  curl " "$work/cluster.log")
    (( ${#tries[@]} == 2 )) || die "scripts/cluster.sh printed ${#tries[@]} curl lines, not one per shard"
    for try in "${tries[@]}"; do
        [[ "$(bash -c "$try" | jq '.entries | length')" == 5 ]] || die "on the cluster: $try got no 5 entries"
    done
    for i in $(seq 1 40); do
        code="$(curl -s -o /dev/null -w '%{http_code}' -H 'Authorization: Bearer lp_demo_key_1' \
            "$cbase/v1/apps/demo-app-$i/logs?hours=24&limit=1")"
        [[ "$code" == 200 ]] || die "on the cluster, the demo key reads demo-app-$i: $code"
    done
    check "the cluster's serve line, its curl lines, and the demo key on its 40 apps"
    stop_pid "${pids[-1]}"
    pids=()
fi

# --------------------------------------------------------------- a fleet ---
if [[ "${README_CHECK_FLEET:-1}" != 0 ]]; then
    FLEET_AFFINITY_PORT="$(port 3)" FLEET_SHARED_PORT="$(port 4)" FLEET_REDIS_PORT="$(port 5)"
    FLEET_PROXY_PORT="$(port 6)" FLEET_ADMIN_PORT="$(port 9)"   # and the next two of each
    export FLEET_AFFINITY_PORT FLEET_SHARED_PORT FLEET_REDIS_PORT FLEET_PROXY_PORT FLEET_ADMIN_PORT
    LOGPROXY__CLICKHOUSE__DATABASE="$DB" scripts/fleet.sh >"$work/fleet.log" 2>&1 &
    pids+=("$!")
    wait_http "http://127.0.0.1:$FLEET_SHARED_PORT/healthz" 120 "${pids[-1]}" || die "scripts/fleet.sh did not start"
    for _ in $(seq 1 100); do grep -q "Ctrl-C stops the fleet" "$work/fleet.log" && break; sleep 0.1; done
    mapfile -t tries < <(grep "^  curl " "$work/fleet.log")
    (( ${#tries[@]} == 2 )) || die "scripts/fleet.sh printed ${#tries[@]} curl lines, not 2"
    for try in "${tries[@]}"; do
        bash -c "$try" | head -n1 | grep -q "^HTTP/1.1 200" || die "behind the fleet: $try"
    done
    bash -c "${tries[1]}" | grep -qi "^x-cache: HIT" || die "the shared front's page is no HIT when asked again"
    check "the fleet's two curl lines, and a HIT on the shared front"
fi
log "README.md and docs/ do what they say"
