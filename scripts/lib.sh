# shellcheck shell=bash
# Shell helpers shared by the scripts in this folder. Source it, don't run it:
#
#   . "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
#
#   log MSG / die MSG           message on stderr, prefixed with the script's name (die exits 1)
#   as_root CMD...              run CMD as root (directly, or through sudo)
#   ensure_packages PKG...      apt-get install the packages that are not installed yet
#   need_cargo                  cargo on PATH (rustup's ~/.cargo/env) and a C linker
#   demo_build                  builds logproxy with DEMO_PROFILE (release, the default, or
#                               debug: seconds once `cargo test` has built it) and sets BIN
#   pip_pinned VENV NAME==VER...  a virtualenv at VENV (made if missing) holding these versions
#   wait_http URL SECONDS [PID] until URL answers 2xx (SECONDS=0: ask once); fails early if PID dies
#   port_in_use PORT [HOST]     something accepts TCP connections on HOST (127.0.0.1):PORT
#   stop_pid PID                SIGTERM, then SIGKILL after 30 s; returns once PID is gone
#   render FILE NAME...         FILE with ${NAME} replaced by the value of shell variable NAME
#   free_port                   a TCP port on 127.0.0.1 that nothing listens on now
#
# A service of a script's own (schemathesis.sh, openapi-client.sh), with CLICKHOUSE_URL and
# DB set by the script:
#   own_service_prepare         builds the debug binary (BIN), checks that ClickHouse answers,
#                               makes the temporary folder `work` and picks PORT; on exit the
#                               service (`pid`) is stopped, DB dropped and `work` removed
#   own_service_start APPS ROWS HOURS
#                               with $work/config.toml alone (LOGPROXY__* unset): migrate,
#                               seed APPS apps, serve in the background (`pid`), wait for /readyz

log() { echo "${0##*/}: $*" >&2; }
die() { log "$*"; exit 1; }

as_root() {
    if [[ "$(id -u)" -eq 0 ]]; then "$@"
    elif command -v sudo >/dev/null 2>&1; then sudo "$@"
    else die "need root (or sudo) to run: $*"
    fi
}

# Runs `apt-get update` at most once per run (LIB_APT_UPDATED is exported, so scripts
# called from this one skip it too). While apt-get installs, a policy-rc.d that says
# "no" keeps the packages' services (nginx, redis, prometheus, clickhouse) from starting.
ensure_packages() {
    local pkg missing=()
    for pkg in "$@"; do
        [[ "$(dpkg-query -W -f='${db:Status-Status}' "$pkg" 2>/dev/null)" == installed ]] \
            || missing+=("$pkg")
    done
    (( ${#missing[@]} )) || return 0
    command -v apt-get >/dev/null 2>&1 || die "missing ${missing[*]} and there is no apt-get"
    log "installing ${missing[*]} with apt-get"
    if [[ -z "${LIB_APT_UPDATED:-}" ]]; then
        as_root apt-get update -q
        export LIB_APT_UPDATED=1
    fi
    if [[ -e /usr/sbin/policy-rc.d ]]; then
        as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}"
    else
        # Exit status 101 means "action not allowed" (man invoke-rc.d).
        as_root bash -c '
            trap "rm -f /usr/sbin/policy-rc.d" EXIT
            printf "#!/bin/sh\nexit 101\n" >/usr/sbin/policy-rc.d
            chmod +x /usr/sbin/policy-rc.d
            DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "$@"' bash "${missing[@]}"
    fi
}

need_cargo() {
    if ! command -v cargo >/dev/null 2>&1 && [[ -f "$HOME/.cargo/env" ]]; then
        # shellcheck disable=SC1091
        . "$HOME/.cargo/env"
    fi
    command -v cargo >/dev/null 2>&1 || die "cargo not found: install Rust (https://rustup.rs)"
    command -v cc >/dev/null 2>&1 || ensure_packages gcc libc6-dev
}

demo_build() {
    local profile="${DEMO_PROFILE:-release}" flags=()
    case "$profile" in
        release) flags=(--release); log "cargo build --release (a few minutes the first time)" ;;
        debug) ;;
        *) die "DEMO_PROFILE=$profile: release or debug" ;;
    esac
    need_cargo
    cargo build --locked --bin logproxy "${flags[@]}"
    BIN="${CARGO_TARGET_DIR:-target}/$profile/logproxy"
    [[ -x "$BIN" ]] || die "$BIN was not built"
}

# pip_holds VENV NAME==VERSION: the virtualenv has exactly that version installed.
pip_holds() {
    [[ "$("$1/bin/python" -c 'import importlib.metadata as m, sys; print(m.version(sys.argv[1]))' \
        "${2%%==*}" 2>/dev/null)" == "${2#*==}" ]]
}

pip_pinned() {
    local venv="$1" spec missing=()
    shift
    for spec in "$@"; do pip_holds "$venv" "$spec" || missing+=("$spec"); done
    (( ${#missing[@]} )) || return 0
    if [[ ! -x "$venv/bin/pip" ]]; then
        # Debian's python3 keeps ensurepip (which venv needs) in python3-venv.
        python3 -c 'import ensurepip' 2>/dev/null || ensure_packages python3-venv
        rm -rf "$venv"
        mkdir -p "$(dirname "$venv")"
        python3 -m venv "$venv"
    fi
    log "installing ${missing[*]} in $venv"
    "$venv/bin/pip" install --quiet --disable-pip-version-check "${missing[@]}"
    for spec in "$@"; do pip_holds "$venv" "$spec" || die "$venv does not hold $spec"; done
}

wait_http() {
    local url="$1" deadline=$(( SECONDS + $2 )) pid="${3:-}"
    until curl -fsS --max-time 2 -o /dev/null "$url" 2>/dev/null; do
        (( SECONDS < deadline )) || return 1
        [[ -z "$pid" ]] || kill -0 "$pid" 2>/dev/null || return 1
        sleep 0.2
    done
}

# sql URL STATEMENT: one statement through ClickHouse's HTTP interface; prints the result (TSV).
sql() { curl -fsS --max-time 60 "$1/" --data-binary "$2"; }

port_in_use() {
    # shellcheck disable=SC2016   # $0 and $1 are expanded by the inner bash
    timeout 2 bash -c 'exec 3<>"/dev/tcp/$0/$1"' "${2:-127.0.0.1}" "$1" 2>/dev/null
}

stop_pid() {
    local pid="$1" deadline=$(( SECONDS + 30 ))
    kill -TERM "$pid" 2>/dev/null || return 0
    while kill -0 "$pid" 2>/dev/null; do
        if (( SECONDS >= deadline )); then
            log "pid $pid still alive after 30 s, sending SIGKILL"
            kill -KILL "$pid" 2>/dev/null || true
            deadline=$(( SECONDS + 10 ))
        fi
        sleep 0.1
    done
}

render() {
    local text name
    text="$(<"$1")"
    shift
    for name in "$@"; do
        text="${text//"\${$name}"/"${!name}"}"
    done
    [[ "$text" != *"\${"* ]] || die "render: a \${...} in the template was not filled"
    printf '%s\n' "$text"
}

free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

own_service_prepare() {
    need_cargo
    cargo build --locked --quiet --bin logproxy
    BIN="${CARGO_TARGET_DIR:-target}/debug/logproxy"
    curl -fsS --max-time 5 -o /dev/null "$CLICKHOUSE_URL/ping" \
        || die "no ClickHouse answers at $CLICKHOUSE_URL (scripts/clickhouse.sh start 18123)"
    work="$(mktemp -d)"
    pid=""
    trap own_service_cleanup EXIT
    trap 'exit 130' INT TERM
    PORT="$(free_port)"
}

own_service_cleanup() {
    local status=$?
    [[ -z "$pid" ]] || stop_pid "$pid"
    sql "$CLICKHOUSE_URL" "DROP DATABASE IF EXISTS $DB" >/dev/null || log "could not drop database $DB"
    if (( status != 0 )) && [[ -s "$work/server.log" ]]; then
        log "the service's log (last lines):"
        tail -n 20 "$work/server.log" >&2
    fi
    rm -rf "$work"
    exit "$status"
}

own_service_start() {
    # Only the config file configures the instance.
    while IFS='=' read -r name _; do unset "$name"; done < <(env | grep '^LOGPROXY__' || true)
    "$BIN" migrate --config "$work/config.toml" >/dev/null
    "$BIN" seed --config "$work/config.toml" --apps "$1" --rows-per-app "$2" --hours "$3" >/dev/null
    "$BIN" serve --config "$work/config.toml" >"$work/server.log" 2>&1 &
    pid=$!
    wait_http "http://127.0.0.1:$PORT/readyz" 30 "$pid" || die "the service did not get ready"
}
