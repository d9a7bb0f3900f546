#!/usr/bin/env bash
# Runs a fleet on this machine over the demo data, in both modes of docs/fleet.md:
#
#   nginx 127.0.0.1:8080  affinity: deploy/nginx/logproxy.conf (hash $app_id consistent)
#   nginx 127.0.0.1:8090  shared:   deploy/nginx/logproxy-shared.conf (round robin)
#   logproxy 127.0.0.1:8081, :8082, :8083, sharing through
#            (their admin listeners, /metrics and /readyz: 127.0.0.1:9081, :9082, :9083)
#   redis-server 127.0.0.1:16379 (no persistence)
#
# The three proxies serve both fronts: behind 8080 each app reaches one process and Redis is
# not needed; behind 8090 any process answers any app and Redis keeps the fleet's limits,
# pages and single-flight. Ctrl-C stops nginx, the proxies and Redis (ClickHouse keeps
# running, as with scripts/demo.sh).
#
# Steps: scripts/demo.sh's ClickHouse, build and seed (DEMO_PREPARE_ONLY=1); Debian's
# redis-server and nginx-light if missing; Redis, the three proxies, nginx (the shipped
# files with these ports put in); the curl lines.
#
# Environment (ports):
#   FLEET_AFFINITY_PORT (8080), FLEET_SHARED_PORT (8090)   the two nginx fronts
#   FLEET_PROXY_PORT (8081), FLEET_ADMIN_PORT (9081)       the first proxy's API and admin
#                                                          listeners; the others count up
#   FLEET_REDIS_PORT (16379)
# and DEMO_REPLICAS, DEMO_RESEED, DEMO_PROFILE, CLICKHOUSE_HTTP_PORT, CARGO_TARGET_DIR as for
# scripts/demo.sh. Data, logs and pid files go to a temporary folder, removed on exit.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
. scripts/lib.sh

CONFIG=config/default.toml
BIN="${CARGO_TARGET_DIR:-target}/${DEMO_PROFILE:-release}/logproxy"
REDIS_PORT="${FLEET_REDIS_PORT:-16379}"
AFFINITY="${FLEET_AFFINITY_PORT:-8080}" SHARED="${FLEET_SHARED_PORT:-8090}"
FRONTS=("$AFFINITY" "$SHARED")
PROXY_PORTS=() ADMIN_PORTS=()  # server.admin_bind: /metrics and /readyz are not on the fronts
for i in 0 1 2; do
    PROXY_PORTS+=("$(( ${FLEET_PROXY_PORT:-8081} + i ))")
    ADMIN_PORTS+=("$(( ${FLEET_ADMIN_PORT:-9081} + i ))")
done
DEMO_KEY=lp_demo_key_1

for port in "${PROXY_PORTS[@]}" "${ADMIN_PORTS[@]}" "${FRONTS[@]}" "$REDIS_PORT"; do
    ! port_in_use "$port" || die "something already listens on 127.0.0.1:$port (a previous fleet?); stop it first"
done

# ClickHouse, the release build and the demo data, exactly as scripts/demo.sh makes them.
env -u LOGPROXY__SERVER__BIND DEMO_PREPARE_ONLY=1 scripts/demo.sh
replicas="${DEMO_REPLICAS:-2}" urls=()
for (( i = 0; i < replicas; i++ )); do
    urls+=("http://127.0.0.1:$(( ${CLICKHOUSE_HTTP_PORT:-18123} + i ))")
done

ensure_packages redis-server nginx-light
DIR="$(mktemp -d /tmp/logproxy-fleet.XXXXXX)"
pids=()
stop_all() {
    trap - INT TERM EXIT
    log "stopping nginx, the proxies and Redis"
    local pid
    for pid in "${pids[@]}"; do stop_pid "$pid"; done
    rm -rf "$DIR"
}
trap stop_all EXIT
trap 'exit 130' INT TERM

redis-server --bind 127.0.0.1 --port "$REDIS_PORT" --save "" --appendonly no \
    --daemonize no --dir "$DIR" --logfile "$DIR/redis.log" &
pids+=("$!")

unset LOGPROXY__CLICKHOUSE__URL LOGPROXY__CLICKHOUSE__URLS
for (( i = 0; i < ${#PROXY_PORTS[@]}; i++ )); do
    port="${PROXY_PORTS[i]}"
    LOGPROXY__SERVER__BIND="127.0.0.1:$port" \
    LOGPROXY__SERVER__ADMIN_BIND="127.0.0.1:${ADMIN_PORTS[i]}" \
    LOGPROXY__CLICKHOUSE__URLS="$(IFS=,; echo "${urls[*]}")" \
    LOGPROXY__REDIS__URL="redis://127.0.0.1:$REDIS_PORT/0" \
    LOGPROXY__REDIS__FALLBACK_FLEET_SIZE="${#PROXY_PORTS[@]}" \
    LOGPROXY__SERVER__PID_FILE="$DIR/logproxy-$port.pid" \
        "$BIN" serve --config "$CONFIG" 2>"$DIR/logproxy-$port.log" &
    pids+=("$!")
done
for (( i = 0; i < ${#PROXY_PORTS[@]}; i++ )); do
    wait_http "http://127.0.0.1:${ADMIN_PORTS[i]}/readyz" 30 "${pids[i + 1]}" \
        || die "logproxy on ${PROXY_PORTS[i]} did not become ready; see $DIR/logproxy-${PROXY_PORTS[i]}.log"
done

# The shipped fronts with this fleet's ports in place of theirs (8080, 8090, 8081-8083).
front() { # file, listen port
    local conf i
    conf="$(<"deploy/nginx/$1")"
    [[ "$conf" == *"listen 127.0.0.1:"* ]] || die "deploy/nginx/$1 has no listen line"
    conf="$(sed -E "s/listen 127\.0\.0\.1:[0-9]+;/listen 127.0.0.1:$2;/" <<<"$conf")"
    for i in 0 1 2; do  # through a token each, so that a new port is never an old one's
        [[ "$conf" == *"server 127.0.0.1:$(( 8081 + i )) "* ]] || die "deploy/nginx/$1 has no server :$(( 8081 + i ))"
        conf="${conf/"server 127.0.0.1:$(( 8081 + i )) "/"server proxy-$i "}"
    done
    for i in 0 1 2; do conf="${conf/"server proxy-$i "/"server 127.0.0.1:${PROXY_PORTS[i]} "}"; done
    printf '%s\n' "$conf" >"$DIR/$1"
}
front logproxy.conf "$AFFINITY"
front logproxy-shared.conf "$SHARED"
cat >"$DIR/nginx.conf" <<NGINX
daemon off;
worker_processes 1;
pid $DIR/nginx.pid;
error_log $DIR/nginx-error.log;
events { worker_connections 1024; }
http {
    access_log off;
    include $DIR/logproxy.conf;
    include $DIR/logproxy-shared.conf;
}
NGINX
nginx -p "$DIR" -c "$DIR/nginx.conf" &
pids+=("$!")
for port in "${FRONTS[@]}"; do
    wait_http "http://127.0.0.1:$port/healthz" 10 "${pids[-1]}" || die "nginx did not start; see $DIR/nginx-error.log"
done

cat <<INFO

A fleet of three logproxy processes (${PROXY_PORTS[*]}) over ClickHouse ${urls[*]}, Redis on $REDIS_PORT.

  affinity (each app on one process):
  curl -si -H 'Authorization: Bearer $DEMO_KEY' 'http://127.0.0.1:$AFFINITY/v1/apps/demo-app-1/logs?limit=5'

  shared (round robin; Redis shares limits, pages, single-flight; repeat it: X-Cache HIT on every process):
  curl -si -H 'Authorization: Bearer $DEMO_KEY' 'http://127.0.0.1:$SHARED/v1/apps/demo-app-2/logs?limit=5'

Each process's /metrics, on its admin listener only: http://127.0.0.1:${ADMIN_PORTS[0]}/metrics
(result="shared", logproxy_redis_up); deploy/prometheus/prometheus.yml scrapes 9081-9083.
Reload all three: for f in $DIR/logproxy-*.pid; do kill -HUP "\$(cat "\$f")"; done
Ctrl-C stops the fleet.

INFO
wait "${pids[@]}"
