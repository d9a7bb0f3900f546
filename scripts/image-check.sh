#!/usr/bin/env bash
# Builds the Dockerfile with a container engine (podman) and runs the image it makes against
# the test ClickHouse, checking what a deployment relies on; then deploy/compose.yaml.
#
# Usage: scripts/image-check.sh
#
#   1. podman and runc from Debian's packages (apt-get, when missing); every podman command
#      runs with deploy/images/containers.conf (CONTAINERS_CONF), which a sandbox needs
#   2. the base images of the Dockerfile's FROM lines: in podman's storage, pulled, or made
#      here from Debian's packages by scripts/base-images.sh
#   3. podman build --format docker (Docker's image format, which keeps HEALTHCHECK)
#      --pull=never --layers=false --network=host, the machine's CA certificates
#      (/etc/ssl/certs) and cargo config (~/.cargo/config.toml, if any) mounted for the RUN
#      steps: the Dockerfile as it is, its cache mounts kept by the engine between builds.
#      Tagged logproxy:latest (the previous image of that name is removed).
#   4. the image's size, and what the Dockerfile adds to its base: at most IMAGE_CHECK_MAX_MB
#      (default 40) MB
#   5. on the host's network (the test ClickHouse listens on 127.0.0.1), the image's own
#      environment but for LOGPROXY__CLICKHOUSE__URL (LOGPROXY_TEST_CLICKHOUSE_URL, default
#      http://127.0.0.1:18123), LOGPROXY__CLICKHOUSE__DATABASE (a fresh lp_image_check_<pid>,
#      dropped at exit) and the ports of the two bind addresses (free ones in 28000-28999):
#      - both bind addresses listen on all interfaces, on EXPOSEd ports; USER is not root
#      - the HEALTHCHECK fails in a container of the image where nothing listens
#      - ENTRYPOINT migrate, ENTRYPOINT seed
#      - ENTRYPOINT + CMD with no arguments serves, as PID 1, as USER's uid (not 0);
#        `podman healthcheck run` passes before --start-period + --retries x --interval
#      - /readyz and /metrics 200 on the admin port, 404 on the API port; the demo key reads
#        demo-app-1's seeded logs, no key gets 401
#      - `podman stop` (the STOPSIGNAL, SIGKILL after 10 s) ends it within 10 s with exit code 0
#   6. scripts/compose-check.sh: deploy/compose.yaml with the image just built
#
# Skips (exit 0, saying why) when not Linux, not root, or without podman and apt-get to
# install it; IMAGE_CHECK_REQUIRED=1 makes a skip a failure. IMAGE_CHECK_COMPOSE=0 leaves out 6.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
. scripts/lib.sh
(( $# == 0 )) || die "usage: scripts/image-check.sh"

CLICKHOUSE_URL="${LOGPROXY_TEST_CLICKHOUSE_URL:-http://127.0.0.1:18123}"
IMAGE=logproxy:latest
MAX_MB="${IMAGE_CHECK_MAX_MB:-40}"
DB="lp_image_check_$$"
NAME="lp-image-check-$$"
export CONTAINERS_CONF="${CONTAINERS_CONF:-$PWD/deploy/images/containers.conf}"

skip() {
    log "SKIPPED: $* (the image was not built nor checked)"
    [[ -z "${IMAGE_CHECK_REQUIRED:-}" ]] || die "IMAGE_CHECK_REQUIRED is set: a skip fails"
    exit 0
}
[[ "$(uname -s)" == Linux ]] || skip "not Linux"
[[ "$(id -u)" -eq 0 ]] || skip "not root (the check runs podman as root: sudo $0)"
command -v podman >/dev/null 2>&1 || command -v apt-get >/dev/null 2>&1 \
    || skip "no podman, and no apt-get to install it"
ensure_packages podman runc
curl -fsS --max-time 5 -o /dev/null "$CLICKHOUSE_URL/ping" \
    || die "no ClickHouse answers at $CLICKHOUSE_URL (scripts/clickhouse.sh start 18123)"

# A port in 28000-28999 that nothing listens on and this run has not taken yet.
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

failure=""
die() { failure="$*"; log "$*"; exit 1; }
cleanup() {
    local status=$?
    podman rm --force --ignore -t 0 "$NAME" "$NAME-idle" >/dev/null 2>&1 || true
    if (( status != 0 )) && [[ -s "${work:-/nonexistent}/server.log" ]]; then
        log "the service's log (last lines):"
        tail -n 20 "$work/server.log" >&2
        [[ -z "$failure" ]] || log "FAILED: $failure"
    fi
    sql "$CLICKHOUSE_URL" "DROP DATABASE IF EXISTS $DB" >/dev/null || log "could not drop $DB"
    [[ -z "${work:-}" ]] || rm -rf "$work"
    exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
work="$(mktemp -d)"
# quiet CMD...: CMD's stderr only when it fails (podman logs errors about the systemd timers
# of healthchecks where there is no systemd, and goes on).
quiet() { "$@" 2>"$work/podman.err" || { cat "$work/podman.err" >&2; return 1; }; }

# ------------------------------------------------------------------- the build ---
# The images the FROM lines name (flags skipped), but for earlier stages of the Dockerfile.
mapfile -t bases < <(awk 'toupper($1) == "FROM" { for (i = 2; i <= NF; i++) if ($i !~ /^--/) { print $i; break } }' Dockerfile \
    | grep -v -x -F -f <(awk 'toupper($1) == "FROM" && toupper($(NF-1)) == "AS" { print $NF }' Dockerfile) || true)
bash scripts/base-images.sh "${bases[@]}"

mounts=(--volume /etc/ssl/certs:/etc/ssl/certs:ro)
[[ ! -f "$HOME/.cargo/config.toml" ]] \
    || mounts+=(--volume "$HOME/.cargo/config.toml:/usr/local/cargo/config.toml:ro")
old_id="$(podman image inspect --format '{{.Id}}' "$IMAGE" 2>/dev/null || true)"
log "podman build -t $IMAGE . (FROM ${bases[*]})"
started=$SECONDS
podman build --format docker --pull=never --layers=false --network=host "${mounts[@]}" \
    -t "$IMAGE" . >"$work/build.log" 2>&1 \
    || { tail -n 30 "$work/build.log" >&2; die "podman build failed"; }
log "built in $(( SECONDS - started )) s"
new_id="$(podman image inspect --format '{{.Id}}' "$IMAGE")"
[[ -z "$old_id" || "$old_id" == "$new_id" ]] || podman rmi "$old_id" >/dev/null 2>&1 || true

# ----------------------------------------------------------------- the config ---
# inspect FIELD: a field of the image's config, as JSON.
inspect() { podman image inspect --format "{{json $1}}" "$IMAGE"; }
json() { python3 -c "import json, sys; v = json.loads(sys.argv[1]); print($1)" "$2"; }

size="$(inspect .Size)"
base_size="$(podman image inspect --format '{{.Size}}' "${bases[-1]}")"
added_mb=$(( (size - base_size) / 1000000 ))
log "image: $(( size / 1000000 )) MB, $added_mb MB over ${bases[-1]} ($(( base_size / 1000000 )) MB)"
(( added_mb <= MAX_MB )) || die "the Dockerfile adds $added_mb MB to ${bases[-1]}: over $MAX_MB MB"

env_of() { json "next((e.split('=', 1)[1] for e in v if e.startswith('$1=')), '')" "$(inspect .Config.Env)"; }
exposed=" $(json "' '.join(p.split('/')[0] for p in (v or {}))" "$(inspect .Config.ExposedPorts)") "
binds=()
for var in LOGPROXY__SERVER__BIND LOGPROXY__SERVER__ADMIN_BIND; do
    bind="$(env_of "$var")"
    [[ "$bind" =~ ^(0\.0\.0\.0|\[::\]):([0-9]+)$ ]] \
        || die "ENV $var=$bind: a container must listen on all interfaces"
    [[ "$exposed" == *" ${BASH_REMATCH[2]} "* ]] \
        || die "$var's port ${BASH_REMATCH[2]} is not EXPOSEd (EXPOSE$exposed)"
    binds+=("${BASH_REMATCH[1]}")
done
user="$(podman image inspect --format '{{.Config.User}}' "$IMAGE")"
[[ -n "$user" ]] || die "the image has no USER: it runs as root"
uid="$(quiet podman run --rm --network=none --entrypoint id "$IMAGE" -u)"
(( uid != 0 )) || die "USER $user is uid 0"
hc="$(inspect .HealthCheck)"
[[ "$hc" != null ]] || die "the image has no HEALTHCHECK"
give_up_ms="$(json "(v.get('StartPeriod', 0) + v.get('Retries', 3) * (v.get('Interval') or 30e9)) // 1e6" "$hc")"
give_up_ms="${give_up_ms%.*}"
log "USER $user (uid $uid); EXPOSE$exposed; healthy within $give_up_ms ms or unhealthy"

# ------------------------------------------------------------------- the run ---
PORT="$(pick_port)"
ADMIN_PORT="$(pick_port)"
run_env=(
    -e "LOGPROXY__CLICKHOUSE__URL=$CLICKHOUSE_URL"
    -e "LOGPROXY__CLICKHOUSE__DATABASE=$DB"
    -e "LOGPROXY__SERVER__BIND=${binds[0]}:$PORT"
    -e "LOGPROXY__SERVER__ADMIN_BIND=${binds[1]}:$ADMIN_PORT"
)
run() { podman run --network=host "${run_env[@]}" "$@"; }

quiet run -d --name "$NAME-idle" --entrypoint sleep "$IMAGE" 60 >/dev/null
status=0
podman healthcheck run "$NAME-idle" >/dev/null 2>&1 || status=$?
(( status == 1 )) || die "HEALTHCHECK with nothing listening on $PORT: $status, not 1 (unhealthy)"
quiet podman rm -f -t 0 "$NAME-idle" >/dev/null
log "HEALTHCHECK fails while nothing listens: ok"

run --rm "$IMAGE" migrate >/dev/null 2>"$work/server.log" || die "the image's migrate failed"
run --rm "$IMAGE" seed --apps 1 --rows-per-app 20 --hours 1 >/dev/null 2>"$work/server.log" \
    || die "the image's seed failed"
log "ENTRYPOINT migrate, ENTRYPOINT seed: ok"

quiet run -d --name "$NAME" "$IMAGE" >/dev/null
started=${EPOCHREALTIME/./}
until podman healthcheck run "$NAME" >/dev/null 2>&1; do
    podman logs "$NAME" >"$work/server.log" 2>&1 || true
    [[ "$(podman inspect --format '{{.State.Running}}' "$NAME")" == true ]] \
        || die "the service exited with $(podman inspect --format '{{.State.ExitCode}}' "$NAME")"
    (( (${EPOCHREALTIME/./} - started) / 1000 < give_up_ms )) \
        || die "HEALTHCHECK still failing after $give_up_ms ms: the engine would call it unhealthy"
    sleep 0.2
done
health="$(podman inspect --format '{{.State.Health.Status}}' "$NAME")"
[[ "$health" == healthy ]] || die "the engine says $health after a passing HEALTHCHECK"
log "HEALTHCHECK passes $(( (${EPOCHREALTIME/./} - started) / 1000 )) ms after the start: $health"

pid="$(podman inspect --format '{{.State.Pid}}' "$NAME")"
read -r _ real_uid _ < <(grep '^Uid:' "/proc/$pid/status")
[[ "$real_uid" == "$uid" ]] || die "the service runs as uid $real_uid, not $uid"
cmdline="$(tr '\0' ' ' <"/proc/$pid/cmdline")"
[[ "${cmdline%% *}" == */logproxy || "${cmdline%% *}" == logproxy ]] \
    || die "PID 1 of the container is not logproxy but: $cmdline"
log "PID 1: $cmdline(uid $real_uid)"

base="http://127.0.0.1:$PORT"
admin="http://127.0.0.1:$ADMIN_PORT"
wait_http "$admin/readyz" 30 || die "/readyz on the admin port did not answer 200"
curl -fsS --max-time 5 -o /dev/null "$admin/metrics" || die "/metrics on the admin port did not answer 200"
for path in /metrics /readyz; do
    status="$(curl -sS -o /dev/null -w '%{http_code}' "$base$path")"
    [[ "$status" == 404 ]] || die "$path on the API port got $status, not 404"
done
status="$(curl -sS -o "$work/logs.json" -w '%{http_code}' \
    -H 'Authorization: Bearer lp_demo_key_1' "$base/v1/apps/demo-app-1/logs?hours=24")"
[[ "$status" == 200 ]] || die "the demo key got $status: $(head -c 300 "$work/logs.json")"
entries="$(python3 -c 'import json, sys; print(len(json.load(sys.stdin)["entries"]))' <"$work/logs.json")"
(( entries > 0 )) || die "the demo key read no entries of demo-app-1"
status="$(curl -sS -o /dev/null -w '%{http_code}' "$base/v1/apps/demo-app-1/logs")"
[[ "$status" == 401 ]] || die "no key got $status, not 401"
log "admin port: /readyz and /metrics 200 (404 on the API port); demo key: 200 with $entries entries; no key: 401"

started=${EPOCHREALTIME/./}
quiet podman stop -t 10 "$NAME" >/dev/null
stop_ms=$(( (${EPOCHREALTIME/./} - started) / 1000 ))
podman logs "$NAME" >"$work/server.log" 2>&1 || true
code="$(podman inspect --format '{{.State.ExitCode}}' "$NAME")"
(( stop_ms < 10000 )) || die "podman stop took $stop_ms ms: the stop signal did not end it, SIGKILL did"
(( code == 0 )) || die "exit code $code after podman stop"
log "podman stop: exit code 0 after $stop_ms ms. The image works."

[[ "${IMAGE_CHECK_COMPOSE:-1}" == 0 ]] || bash scripts/compose-check.sh "$IMAGE"
log "done in $SECONDS s"
