#!/usr/bin/env bash
# Checks the Dockerfile's runtime stage without a container engine: a Debian root file system
# made with debootstrap stands in for the base image, the runtime stage's instructions are
# replayed into it, and the image's command, its HEALTHCHECK and `docker stop` run in it.
#
# Usage: scripts/image-check.sh [--release]
#
#   1. scripts/dockerfile-plan.py reads the Dockerfile (parsed, so the check follows the file:
#      the builder's FROM rust:<version>-<suite> and its `cargo build ...` words, the runtime
#      FROM debian:<suite>[-slim], its RUN / WORKDIR / COPY / ENV / USER / EXPOSE lines,
#      HEALTHCHECK's options and CMD, ENTRYPOINT and CMD); what it cannot read fails the check
#   2. the build context: scripts/docker-context.py copies what `COPY . .` would send (the
#      files .dockerignore leaves) to target/image-check/context
#   3. the binary: there, the builder's toolchain (rustup, installed if missing) runs the
#      Dockerfile's cargo words, without `--release` unless --release is given (a release build
#      takes 7+ minutes here; see README "Docker"); IMAGE_CHECK_BIN=FILE uses that binary instead
#   4. debootstrap --variant=minbase <suite> from IMAGE_CHECK_MIRROR (http://deb.debian.org/
#      debian), cached as a tarball in target/image-check/ and unpacked afresh for every run
#   5. the runtime stage replayed into it: RUN as root through /bin/sh -c, WORKDIR made, COPY
#      from the context (owned by root), COPY --from the build stage mirrored (its /out/logproxy
#      is the binary of step 3), ENV and USER kept for what runs next
#   6. every command then runs as Docker would run it: chroot to the rootfs (unshare --root),
#      the WORKDIR, USER's uid and gid from the rootfs's /etc/passwd, no supplementary groups,
#      its own PID namespace (the command is PID 1) with /proc mounted, the host's network, and
#      only Docker's PATH and HOME, the image's ENV and these overrides: LOGPROXY__CLICKHOUSE__URL
#      (LOGPROXY_TEST_CLICKHOUSE_URL, default http://127.0.0.1:18123), the bind address's port
#      and the admin listener's (free ones) and LOGPROXY__CLICKHOUSE__DATABASE (a fresh
#      lp_image_check_<pid>, dropped at exit)
#   7. checks: the bind address and the admin listener (LOGPROXY__SERVER__ADMIN_BIND, which
#      must be set) listen on all interfaces on EXPOSEd ports; USER is not root;
#      HEALTHCHECK fails while nothing listens; ENTRYPOINT migrate and seed; ENTRYPOINT + CMD
#      serves as that uid; HEALTHCHECK succeeds (each run bounded by its --timeout) before
#      --start-period + --retries x --interval; /readyz and /metrics are 200 on the admin port
#      and 404 on the API port; the demo key reads demo-app-1's
#      seeded logs and no key gets 401; SIGTERM to PID 1 exits 0 within 10 s (`docker stop`)
#
# Skips (exit 0, saying why) when it cannot run here: not Linux or not root, no namespaces,
# no debootstrap and no apt-get, or no cached rootfs and no answer from the mirror.
# IMAGE_CHECK_REQUIRED=1 makes a skip a failure.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
. scripts/lib.sh

RELEASE=0
case "${1:-}" in
    "") ;;
    --release) RELEASE=1 ;;
    *) die "usage: scripts/image-check.sh [--release]" ;;
esac
CLICKHOUSE_URL="${LOGPROXY_TEST_CLICKHOUSE_URL:-http://127.0.0.1:18123}"
MIRROR="${IMAGE_CHECK_MIRROR:-http://deb.debian.org/debian}"
CACHE=target/image-check
DOCKER_PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin # debian images' ENV PATH
DB="lp_image_check_$$"

skip() {
    log "SKIPPED: $* (the Dockerfile's runtime stage was not checked)"
    [[ -z "${IMAGE_CHECK_REQUIRED:-}" ]] || die "IMAGE_CHECK_REQUIRED is set: a skip fails"
    exit 0
}

# ------------------------------------------------------------ the Dockerfile ---
command -v python3 >/dev/null 2>&1 || ensure_packages python3
plan="$(python3 scripts/dockerfile-plan.py Dockerfile)" || die "cannot follow the Dockerfile"
# What the plan sets (see scripts/dockerfile-plan.py), and step_0 .. step_<nsteps - 1>.
builder_image="" base_image="" nsteps=0 hc_interval_ms=0 hc_timeout_ms=0 hc_start_period_ms=0
hc_retries=0 builder_cargo=() expose=() healthcheck=() entrypoint=() cmd=()
eval "$plan"
[[ "$base_image" =~ ^debian:([a-z]+)(-slim)?$ ]] \
    || die "runtime stage FROM $base_image: this check knows only debian:<suite>[-slim]"
suite="${BASH_REMATCH[1]}"
[[ "$builder_image" =~ ^rust:([0-9]+\.[0-9]+(\.[0-9]+)?)-([a-z]+)$ ]] \
    || die "build stage FROM $builder_image: this check knows only rust:<version>-<suite>"
toolchain="${BASH_REMATCH[1]}"
# The binary links the build stage's glibc; the runtime stage must have it.
[[ "${BASH_REMATCH[3]}" == "$suite" ]] \
    || die "build stage on ${BASH_REMATCH[3]}, runtime stage on $suite: the glibc versions differ"

# ------------------------------------------------------- can it run here? ---
[[ "$(uname -s)" == Linux ]] || skip "not Linux"
[[ "$(id -u)" -eq 0 ]] || skip "not root (chroot and debootstrap need root: sudo $0)"
unshare --mount --pid --fork --mount-proc true 2>/dev/null \
    || skip "unshare --mount --pid cannot run here (no CAP_SYS_ADMIN?)"
mkdir -p "$CACHE"
opts="$(findmnt -n -o OPTIONS -T "$CACHE")"
[[ ",$opts," != *,noexec,* && ",$opts," != *,nodev,* ]] \
    || skip "$CACHE is on a noexec or nodev mount ($opts)"
rootfs_tar="$CACHE/debian-$suite-minbase.tar"
if [[ ! -f "$rootfs_tar" ]]; then
    curl -fs --max-time 10 -o /dev/null "$MIRROR/dists/$suite/Release" \
        || skip "no cached rootfs and no answer from $MIRROR"
    command -v debootstrap >/dev/null 2>&1 || command -v apt-get >/dev/null 2>&1 \
        || skip "no debootstrap and no apt-get to install it"
fi
curl -fsS --max-time 5 -o /dev/null "$CLICKHOUSE_URL/ping" \
    || die "no ClickHouse answers at $CLICKHOUSE_URL (scripts/clickhouse.sh start 18123)"

# ------------------------------------------------------- the context, the binary ---
# Mirrored: the build stage's `COPY . .`, so a .dockerignore that leaves out what the build
# (or the runtime stage's COPY) needs fails here too.
context="$CACHE/context"
log "build context: $(python3 scripts/docker-context.py . "$context")"
if [[ -n "${IMAGE_CHECK_BIN:-}" ]]; then
    BIN="$IMAGE_CHECK_BIN"
else
    need_cargo
    rustup run "$toolchain" cargo --version >/dev/null 2>&1 \
        || rustup toolchain install "$toolchain" --profile minimal
    words=("${builder_cargo[@]:1}")
    profile=release
    if (( ! RELEASE )); then
        for i in "${!words[@]}"; do [[ "${words[$i]}" != --release ]] || unset 'words[i]'; done
        profile=debug
    fi
    log "building with Rust $toolchain in the context: cargo ${words[*]}"
    target_dir="$(realpath "$CACHE")/rust-$toolchain"
    (cd "$context" && CARGO_TARGET_DIR="$target_dir" cargo "+$toolchain" "${words[@]}")
    BIN="$target_dir/$profile/logproxy"
fi
[[ -x "$BIN" ]] || die "no binary at $BIN"

# ------------------------------------------------------------------ the rootfs ---
if [[ ! -f "$rootfs_tar" ]]; then
    ensure_packages debootstrap
    fresh="$(mktemp -d "$CACHE/debootstrap.XXXXXX")"
    log "debootstrap --variant=minbase $suite from $MIRROR (cached in $rootfs_tar)"
    started=$SECONDS
    debootstrap --variant=minbase "$suite" "$fresh/root" "$MIRROR" >"$fresh/log" 2>&1 \
        || { tail -n 20 "$fresh/log" >&2; rm -rf --one-file-system "$fresh"; die "debootstrap failed"; }
    tar -C "$fresh/root" -cf "$fresh/rootfs.tar" .
    mv "$fresh/rootfs.tar" "$rootfs_tar"
    rm -rf --one-file-system "$fresh"
    log "debootstrap took $(( SECONDS - started )) s"
fi

work="$(mktemp -d "$CACHE/run.XXXXXX")"
root="$work/root"
server=""  # the host PID of the served process (PID 1 in its namespace)
cleanup() {
    local status=$?
    if [[ -n "$server" ]] && kill -0 "$server" 2>/dev/null; then
        kill -TERM "$server" 2>/dev/null || true
        for _ in $(seq 50); do kill -0 "$server" 2>/dev/null && sleep 0.1; done
        kill -KILL "$server" 2>/dev/null || true
    fi
    wait 2>/dev/null || true
    sql "$CLICKHOUSE_URL" "DROP DATABASE IF EXISTS $DB" >/dev/null || log "could not drop $DB"
    if (( status != 0 )) && [[ -s "$work/server.log" ]]; then
        log "the service's log (last lines):"
        tail -n 20 "$work/server.log" >&2
    fi
    rm -rf --one-file-system "$work"
    exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
mkdir "$root"
tar -C "$root" -xf "$rootfs_tar"

# ----------------------------------------------------- the runtime stage, replayed ---
declare -A env_value=()
env_order=()
workdir=/
user=root

# ids USER[:GROUP]: sets uid, gid and home from the rootfs's /etc/passwd and /etc/group.
ids() {
    local name="${1%%:*}" group="" entry
    [[ "$1" != *:* ]] || group="${1#*:}"
    if [[ "$name" =~ ^[0-9]+$ ]]; then entry="$name:x:$name:$name::/:"
    else entry="$(grep -m1 "^$name:" "$root/etc/passwd")" || die "USER $1: no such user in the image"
    fi
    IFS=: read -r _ _ uid gid _ home _ <<<"$entry"
    home="${home:-/}"
    if [[ "$group" =~ ^[0-9]+$ ]]; then gid="$group"
    elif [[ -n "$group" ]]; then
        entry="$(grep -m1 "^$group:" "$root/etc/group")" || die "USER $1: no such group in the image"
        gid="$(cut -d: -f3 <<<"$entry")"
    fi
}

# in_image [VAR=VALUE...] -- ARGV...: ARGV in the image as USER, in WORKDIR, with the image's
# environment (and the given overrides), as PID 1 of a new PID namespace with its own /proc.
in_image() {
    local overrides=() uid gid home name
    while [[ "$1" != -- ]]; do overrides+=("$1"); shift; done
    shift
    ids "$user"
    local vars=("PATH=$DOCKER_PATH" "HOSTNAME=image-check" "HOME=$home")
    for name in "${env_order[@]}"; do vars+=("$name=${env_value[$name]}"); done
    env -i "${vars[@]}" "${overrides[@]}" "$(command -v unshare)" --pid --fork --mount-proc \
        --root="$root" --wd="$workdir" --setgid="$gid" --setuid="$uid" -- "$@"
}

for (( i = 0; i < nsteps; i++ )); do
    declare -n step="step_$i"
    case "${step[0]}" in
        RUN)
            log "RUN ${step[1]}"
            in_image -- /bin/sh -c "${step[1]}" || die "RUN failed: ${step[1]}" ;;
        WORKDIR)
            [[ "${step[1]}" == /* ]] && workdir="${step[1]}" || workdir="${workdir%/}/${step[1]}"
            mkdir -p "$root$workdir" ;;
        COPY)
            from="${step[1]}" srcs=("${step[@]:2:${#step[@]}-3}") dst="${step[-1]}"
            [[ "$dst" == /* ]] || dst="${workdir%/}/$dst"
            for src in "${srcs[@]}"; do
                if [[ -n "$from" ]]; then
                    # Mirrored: the build stage's `install -D -m 0755 target/release/logproxy /out/logproxy`.
                    [[ "$from:$src" == build:/out/logproxy ]] \
                        || die "COPY --from=$from $src: only the build stage's /out/logproxy is known"
                    src="$BIN"
                else
                    [[ "$src" != /* && "$src" != *..* ]] || die "COPY $src: outside the build context"
                    src="$context/$src"
                    [[ -e "$src" ]] || die "COPY ${step[*]:2}: not in the build context"
                fi
                if [[ -d "$src" ]]; then
                    mkdir -p "$root$dst"
                    cp -R --preserve=mode,timestamps "$src/." "$root$dst/"
                elif [[ "$dst" == */ ]]; then
                    mkdir -p "$root$dst"
                    cp --preserve=mode,timestamps "$src" "$root$dst${src##*/}"
                else
                    mkdir -p "$(dirname "$root$dst")"
                    cp --preserve=mode,timestamps "$src" "$root$dst"
                fi
            done ;;
        ENV)
            [[ -v "env_value[${step[1]}]" ]] || env_order+=("${step[1]}")
            env_value[${step[1]}]="${step[2]}" ;;
        USER)
            user="${step[1]}" ;;
    esac
    unset -n step
done

# ------------------------------------------------------------------ the checks ---
uid="" gid="" home=""
ids "$user"
(( uid != 0 )) || die "USER $user: the image runs as root"
bind="${env_value[LOGPROXY__SERVER__BIND]:-}"
[[ "$bind" =~ ^(0\.0\.0\.0|\[::\]):([0-9]+)$ ]] \
    || die "ENV LOGPROXY__SERVER__BIND=$bind: a container must listen on all interfaces"
bind_host="${BASH_REMATCH[1]}" bind_port="${BASH_REMATCH[2]}"
[[ " ${expose[*]} " == *" $bind_port "* ]] \
    || die "the bind port $bind_port is not EXPOSEd (EXPOSE ${expose[*]})"
# CONTRACT.md §8: the image keeps /metrics and /readyz off the API port.
admin_bind="${env_value[LOGPROXY__SERVER__ADMIN_BIND]:-}"
[[ "$admin_bind" =~ ^(0\.0\.0\.0|\[::\]):([0-9]+)$ ]] \
    || die "ENV LOGPROXY__SERVER__ADMIN_BIND=$admin_bind: the image must set an admin listener on all interfaces"
admin_host="${BASH_REMATCH[1]}" admin_port="${BASH_REMATCH[2]}"
[[ " ${expose[*]} " == *" $admin_port "* ]] \
    || die "the admin port $admin_port is not EXPOSEd (EXPOSE ${expose[*]})"
PORT="$(free_port)"
ADMIN_PORT="$(free_port)"
while [[ "$ADMIN_PORT" == "$PORT" ]]; do ADMIN_PORT="$(free_port)"; done
run_env=(
    "LOGPROXY__CLICKHOUSE__URL=$CLICKHOUSE_URL"
    "LOGPROXY__SERVER__BIND=$bind_host:$PORT"
    "LOGPROXY__SERVER__ADMIN_BIND=$admin_host:$ADMIN_PORT"
    "LOGPROXY__CLICKHOUSE__DATABASE=$DB"
)
log "USER $user is uid $uid; the service will listen on $bind_host:$PORT, its admin listener on $admin_host:$ADMIN_PORT"

# Every process below PID.
descendants() {
    local child
    for child in $(pgrep -P "$1"); do echo "$child"; descendants "$child"; done
}

# bounded MILLISECONDS ARGV...: ARGV's status, or 124 once it has run that long (then its
# processes are killed: the namespace's PID 1 lost unshare's parent-death signal with its uid).
bounded() {
    local deadline=$(( ${EPOCHREALTIME/./} / 1000 + $1 )) pid
    shift
    "$@" &
    pid=$!
    while kill -0 "$pid" 2>/dev/null; do
        if (( ${EPOCHREALTIME/./} / 1000 > deadline )); then
            # shellcheck disable=SC2046   # one PID a word
            kill -KILL $(descendants "$pid") "$pid" 2>/dev/null || true
            wait "$pid" 2>/dev/null || true
            return 124
        fi
        sleep 0.05
    done
    wait "$pid"
}
run_healthcheck() { bounded "$hc_timeout_ms" in_image "${run_env[@]}" -- "${healthcheck[@]}" 2>/dev/null; }

if run_healthcheck; then die "HEALTHCHECK succeeded while nothing listened on port $PORT"; fi
log "HEALTHCHECK fails while nothing listens: ok"

in_image "${run_env[@]}" -- "${entrypoint[@]}" migrate >/dev/null \
    || die "${entrypoint[*]} migrate failed in the image"
in_image "${run_env[@]}" -- "${entrypoint[@]}" seed --apps 1 --rows-per-app 20 --hours 1 >/dev/null \
    || die "${entrypoint[*]} seed failed in the image"
log "${entrypoint[*]} migrate, ${entrypoint[*]} seed: ok"

log "serving: ${entrypoint[*]} ${cmd[*]}"
in_image "${run_env[@]}" -- "${entrypoint[@]}" "${cmd[@]}" >"$work/server.log" 2>&1 &
serving=$!
# The served process: the one below it whose root is the rootfs (PID 1 in its namespace).
for _ in $(seq 200); do
    for pid in $(descendants "$serving"); do
        [[ "$(readlink "/proc/$pid/root" 2>/dev/null)" != "$(realpath "$root")" ]] || server="$pid"
    done
    [[ -z "$server" ]] || break
    kill -0 "$serving" 2>/dev/null || die "the service exited"
    sleep 0.05
done
[[ -n "$server" ]] || die "the service did not start in the rootfs"

started=${EPOCHREALTIME/./}
give_up=$(( hc_start_period_ms + hc_retries * hc_interval_ms ))
until run_healthcheck; do
    kill -0 "$server" 2>/dev/null || die "the service exited"
    (( (${EPOCHREALTIME/./} - started) / 1000 < give_up )) \
        || die "HEALTHCHECK still failing after ${give_up} ms: Docker would call it unhealthy"
    sleep 0.2
done
log "HEALTHCHECK succeeded $(( (${EPOCHREALTIME/./} - started) / 1000 )) ms after the start"

read -r _ real_uid _ < <(grep '^Uid:' "/proc/$server/status")
[[ "$real_uid" == "$uid" ]] || die "the service runs as uid $real_uid, not $uid"

base="http://127.0.0.1:$PORT"
admin="http://127.0.0.1:$ADMIN_PORT"
wait_http "$admin/readyz" 30 "$server" || die "/readyz on the admin port did not answer 200"
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

# `docker stop`: SIGTERM to PID 1, SIGKILL 10 s later.
kill -TERM "$server"
deadline=$(( SECONDS + 10 ))
while kill -0 "$serving" 2>/dev/null && (( SECONDS < deadline )); do sleep 0.1; done
kill -0 "$serving" 2>/dev/null && die "still running 10 s after SIGTERM: docker stop would kill it"
status=0
wait "$serving" || status=$?
server=""
(( status == 0 )) || die "exited with status $status after SIGTERM"
log "SIGTERM to PID 1: exited 0. The runtime stage works."
