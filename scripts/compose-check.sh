#!/usr/bin/env bash
# Runs deploy/compose.yaml with podman-compose, with the images that can be had here, and
# checks that logproxy answers through it and that Prometheus scrapes it.
#
# Usage: scripts/compose-check.sh [LOGPROXY_IMAGE]
#        (default logproxy:latest, which must exist: scripts/image-check.sh builds it)
#
#   1. podman-compose, and the CNI plugin that makes service names host names, from Debian
#   2. the images: ClickHouse's and Prometheus's of the compose file, or where they cannot be
#      pulled, logproxy-clickhouse:debian and logproxy-prometheus:debian (scripts/base-images.sh:
#      Debian's ClickHouse 18.16 and Prometheus 2.42). Grafana is not in Debian: it is run only
#      when its image is in podman's storage or can be pulled, and the check says so.
#   3. up -d as the project lp-compose-<pid>, the ports published on free ones in 28000-28999
#   4. checks, through the published ports: migrate exits 0; /readyz is 200 on the admin
#      port; after a seed (exec in the logproxy container) the demo key reads demo-app-1 on
#      the API port; Prometheus shows the target logproxy:9464 up and has logproxy_ series
#      (within 60 s); Grafana, when run, has the dashboard
#   5. at exit: down, and the project's volume and network removed
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
. scripts/lib.sh
export CONTAINERS_CONF="${CONTAINERS_CONF:-$PWD/deploy/images/containers.conf}"
export LOGPROXY_IMAGE="${1:-logproxy:latest}"
PROJECT="lp-compose-$$"
FILE=deploy/compose.yaml
ensure_packages podman runc podman-compose golang-github-containernetworking-plugin-dnsname
podman image exists "$LOGPROXY_IMAGE" || die "no image $LOGPROXY_IMAGE (scripts/image-check.sh builds it)"

# default VAR: the image the compose file names unless VAR is set (${VAR:-default}).
default() { sed -n "s/.*\${$1:-\([^}]*\)}.*/\1/p" "$FILE" | head -n 1; }
# have IMAGE: in podman's storage, or pulled (as the machine's registries.conf resolves it).
have() { podman image exists "$1" || timeout 120 podman pull --quiet "$1" >/dev/null 2>&1; }

export CLICKHOUSE_IMAGE="${CLICKHOUSE_IMAGE:-$(default CLICKHOUSE_IMAGE)}"
export PROMETHEUS_IMAGE="${PROMETHEUS_IMAGE:-$(default PROMETHEUS_IMAGE)}"
export GRAFANA_IMAGE="${GRAFANA_IMAGE:-$(default GRAFANA_IMAGE)}"
for var in CLICKHOUSE_IMAGE PROMETHEUS_IMAGE; do
    have "${!var}" && continue
    what="${var%_IMAGE}"
    local_image="logproxy-${what,,}:debian"
    log "${!var} cannot be pulled: $local_image (Debian's package) instead"
    bash scripts/base-images.sh "$local_image"
    printf -v "$var" '%s' "$local_image"
done
services=(clickhouse migrate logproxy prometheus)
if have "$GRAFANA_IMAGE"; then services+=(grafana)
else log "Grafana left out of the run: $GRAFANA_IMAGE cannot be pulled, and Debian has no package"
fi

taken=" "
pick_port() {
    local port
    for port in $(shuf -i 28000-28999 -n 100); do
        if [[ "$taken" == *" $port "* ]] || port_in_use "$port"; then continue; fi
        taken+="$port "
        echo "$port"
        return
    done
    die "no free port in 28000-28999"
}
export LOGPROXY_PORT LOGPROXY_ADMIN_PORT PROMETHEUS_PORT GRAFANA_PORT
LOGPROXY_PORT="$(pick_port)" LOGPROXY_ADMIN_PORT="$(pick_port)"
PROMETHEUS_PORT="$(pick_port)" GRAFANA_PORT="$(pick_port)"

compose() { podman-compose -p "$PROJECT" -f "$FILE" "$@"; }
work="$(mktemp -d)"
failure=""
die() { failure="$*"; log "$*"; exit 1; }
cleanup() {
    local status=$?
    if (( status != 0 )); then
        for service in "${services[@]}"; do
            log "$service's log (last lines):"
            podman logs --tail 15 "${PROJECT}_${service}_1" 2>&1 | sed 's/^/    /' >&2 || true
        done
        [[ -z "$failure" ]] || log "FAILED: $failure"
    fi
    compose down -t 10 >"$work/down.log" 2>&1 || { cat "$work/down.log" >&2; log "compose down failed"; }
    podman volume rm -f "${PROJECT}_clickhouse" >/dev/null 2>&1 || true
    podman network rm -f "${PROJECT}_default" >/dev/null 2>&1 || true
    rm -rf "$work"
    exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

log "up: ${services[*]} (logproxy $LOGPROXY_IMAGE, ClickHouse $CLICKHOUSE_IMAGE, Prometheus $PROMETHEUS_IMAGE)"
compose up -d --no-build "${services[@]}" >"$work/up.log" 2>&1 \
    || { tail -n 30 "$work/up.log" >&2; die "podman-compose up failed"; }
for service in "${services[@]}"; do
    podman container exists "${PROJECT}_${service}_1" \
        || { tail -n 30 "$work/up.log" >&2; die "no container for $service"; }
done

admin="http://127.0.0.1:$LOGPROXY_ADMIN_PORT"
api="http://127.0.0.1:$LOGPROXY_PORT"
prometheus="http://127.0.0.1:$PROMETHEUS_PORT"
deadline=$(( SECONDS + 60 ))
until [[ "$(podman inspect --format '{{.State.Status}} {{.State.ExitCode}}' "${PROJECT}_migrate_1")" == "exited 0" ]]; do
    (( SECONDS < deadline )) || die "migrate did not exit 0 within 60 s"
    sleep 1
done
wait_http "$admin/readyz" 60 || die "logproxy's /readyz on the published admin port did not answer 200"
podman exec "${PROJECT}_logproxy_1" logproxy seed --apps 1 --rows-per-app 20 --hours 1 >/dev/null \
    || die "seed in the logproxy container failed"
status="$(curl -sS -o "$work/logs.json" -w '%{http_code}' \
    -H 'Authorization: Bearer lp_demo_key_1' "$api/v1/apps/demo-app-1/logs?hours=24")"
[[ "$status" == 200 ]] || die "the demo key got $status: $(head -c 300 "$work/logs.json")"
entries="$(python3 -c 'import json, sys; print(len(json.load(sys.stdin)["entries"]))' <"$work/logs.json")"
(( entries > 0 )) || die "the demo key read no entries of demo-app-1"
log "logproxy answers through compose: /readyz 200, the demo key reads $entries entries"

# prom QUERY: the number of series Prometheus has for QUERY (an instant query).
prom() {
    curl -fsS --max-time 5 "$prometheus/api/v1/query" --data-urlencode "query=$1" 2>/dev/null \
        | python3 -c 'import json, sys; print(len(json.load(sys.stdin)["data"]["result"]))'
}
deadline=$(( SECONDS + 60 ))
until [[ "$(prom 'up{job="logproxy",instance="logproxy:9464"} == 1' || echo 0)" == 1 ]]; do
    (( SECONDS < deadline )) || {
        log "Prometheus's targets: $(curl -sS "$prometheus/api/v1/targets" | head -c 600 || true)"
        die "Prometheus does not show logproxy:9464 up within 60 s"
    }
    sleep 1
done
series="$(prom '{__name__=~"logproxy_.+",job="logproxy"}')"
(( series > 0 )) || die "Prometheus scraped logproxy:9464 but has no logproxy_ series"
log "Prometheus: target logproxy:9464 up, $series logproxy_ series"
if [[ " ${services[*]} " == *" grafana "* ]]; then
    wait_http "http://127.0.0.1:$GRAFANA_PORT/api/health" 60 || die "Grafana did not answer"
    curl -fsS -u admin:admin "http://127.0.0.1:$GRAFANA_PORT/api/dashboards/uid/logproxy" -o /dev/null \
        || die "Grafana has no logproxy dashboard"
    log "Grafana: the logproxy dashboard is provisioned"
fi
log "the compose file works ($SECONDS s)"
