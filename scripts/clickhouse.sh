#!/usr/bin/env bash
# Local ClickHouse servers for development and tests, on 127.0.0.1 only.
#
# Usage: scripts/clickhouse.sh start | stop [--purge] | status  [HTTP_PORT...]
#
#   scripts/clickhouse.sh start                # one server on 18123
#   scripts/clickhouse.sh start 18123 18124    # two side by side: the app's "replicas" (no
#                                              # ClickHouse replication; the app seeds each)
#   scripts/clickhouse.sh stop --purge 18124   # stop it and delete its folder
#
# A server is known by its HTTP port. Each one has its own TCP port and folder, so servers
# on different ports run side by side. `start` installs Debian's clickhouse-server (18.16 on
# bookworm) and curl with apt-get if they are missing, fills scripts/clickhouse/config.xml.in
# into the folder and waits for /ping; a server that already answers is left as it is.
# `status` exits 1 if a server does not answer. Works as root.
#
# Environment (ports given as arguments take the place of CLICKHOUSE_HTTP_PORT):
#   CLICKHOUSE_HTTP_PORT      HTTP port (default 18123)
#   CLICKHOUSE_TCP_PORT       native port (default HTTP port + 10000, or - 10000 past 65535);
#                             with several ports, the first server's, and the next count up
#   CLICKHOUSE_DIR            folder (default .clickhouse/<http port>, git-ignored); one server only
#   CLICKHOUSE_PURGE=1        same as `stop --purge`
#   CLICKHOUSE_START_TIMEOUT  seconds to wait for /ping (default 60)
#   CLICKHOUSE_SERVER_BIN     server binary to run instead of the installed one
#   CLICKHOUSE_EXTRA_CONFIG   an XML file merged into the server's config (copied into its
#                             config.d/ on start), e.g. remote_servers for a cluster (cluster.sh)
set -euo pipefail
SCRIPTS="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
. "$SCRIPTS/lib.sh"

usage() { echo "usage: $0 start | stop [--purge] | status  [HTTP_PORT...]" >&2; exit 2; }
cmd="${1:-}"
[[ "$cmd" == start || "$cmd" == stop || "$cmd" == status ]] || usage
shift
purge="${CLICKHOUSE_PURGE:-0}" ports=()
for arg in "$@"; do
    case "$arg" in
        --purge) [[ "$cmd" == stop ]] || usage; purge=1 ;;
        *) ports+=("$arg") ;;
    esac
done

# Several ports: run this script once per server.
if (( ${#ports[@]} > 1 )); then
    [[ -z "${CLICKHOUSE_DIR:-}" ]] || die "CLICKHOUSE_DIR is one server's folder; unset it for several ports"
    rc=0 i=0
    for port in "${ports[@]}"; do
        CLICKHOUSE_HTTP_PORT="$port" CLICKHOUSE_PURGE="$purge" \
            CLICKHOUSE_TCP_PORT="${CLICKHOUSE_TCP_PORT:+$(( CLICKHOUSE_TCP_PORT + i ))}" \
            bash "${BASH_SOURCE[0]}" "$cmd" || rc=1
        i=$(( i + 1 ))
    done
    exit "$rc"
fi

# ----------------------------------------------------------------- one server ---
HTTP_PORT="${ports[0]:-${CLICKHOUSE_HTTP_PORT:-18123}}"
valid_port() { [[ "$1" =~ ^[0-9]+$ ]] && (( $1 > 0 && $1 <= 65535 )); }
valid_port "$HTTP_PORT" || die "invalid HTTP port: $HTTP_PORT"
if (( HTTP_PORT + 10000 <= 65535 )); then TCP_PORT=$(( HTTP_PORT + 10000 )); else TCP_PORT=$(( HTTP_PORT - 10000 )); fi
TCP_PORT="${CLICKHOUSE_TCP_PORT:-$TCP_PORT}"
valid_port "$TCP_PORT" || die "invalid TCP port: $TCP_PORT"
[[ "$TCP_PORT" != "$HTTP_PORT" ]] || die "HTTP and TCP port must differ ($HTTP_PORT)"
CH_DIR="${CLICKHOUSE_DIR:-$(cd "$SCRIPTS/.." && pwd)/.clickhouse/$HTTP_PORT}"
[[ "$CH_DIR" == /* ]] || CH_DIR="$PWD/$CH_DIR"   # config.xml needs absolute paths
CH_DIR="${CH_DIR%/}"
PID_FILE="$CH_DIR/clickhouse-server.pid"
PING_URL="http://127.0.0.1:$HTTP_PORT/ping"

# The pid of the server running from $CH_DIR: the one in its pid file, else (pid files can
# go missing) a process found by pgrep. Either way its command line must name our config.
server_pid() {
    local pid
    for pid in $(cat "$PID_FILE" 2>/dev/null) $(pgrep -f -- "--config-file=$CH_DIR/config.xml" 2>/dev/null || true); do
        tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -qF -- "--config-file=$CH_DIR/config.xml " \
            && { echo "$pid"; return 0; }
    done
    return 1
}

server_bin() {
    if [[ -n "${CLICKHOUSE_SERVER_BIN:-}" ]]; then echo "$CLICKHOUSE_SERVER_BIN"
    else command -v clickhouse-server || command -v /usr/sbin/clickhouse-server   # sbin: not in a user's PATH
    fi
}

print_log_tail() {
    local f
    for f in "$CH_DIR"/log/{stdout,clickhouse-server.err,clickhouse-server}.log; do
        [[ -s "$f" ]] && { echo "----- tail -n 40 $f -----"; tail -n 40 "$f"; } >&2
    done
    return 0
}

cmd_status() {
    if wait_http "$PING_URL" 0; then echo "running on port $HTTP_PORT"; return 0; fi
    echo "not running on port $HTTP_PORT"
    return 1
}

cmd_start() {
    local need=() bin pid
    command -v curl >/dev/null 2>&1 || need+=(curl)
    server_bin >/dev/null || need+=(clickhouse-server clickhouse-client)
    ensure_packages "${need[@]}"
    bin="$(server_bin)" || die "clickhouse-server not found after installing it"

    if wait_http "$PING_URL" 0; then
        if pid="$(server_pid)"; then log "already running on port $HTTP_PORT (pid $pid, dir $CH_DIR)"
        else log "already running on port $HTTP_PORT (not started from $CH_DIR)"
        fi
        echo "running on port $HTTP_PORT"
        return 0
    fi

    if pid="$(server_pid)"; then
        log "server pid $pid exists but does not answer /ping yet; waiting for it"
    else
        port_in_use "$HTTP_PORT" && die "port $HTTP_PORT is in use by something that does not answer $PING_URL"
        port_in_use "$TCP_PORT" && die "TCP port $TCP_PORT is in use (set CLICKHOUSE_TCP_PORT)"
        mkdir -p "$CH_DIR"/{data,tmp,user_files,format_schemas,log}
        # shellcheck disable=SC2034   # CH_DIR, HTTP_PORT and TCP_PORT are read by render
        render "$SCRIPTS/clickhouse/config.xml.in" CH_DIR HTTP_PORT TCP_PORT >"$CH_DIR/config.xml"
        cp "$SCRIPTS/clickhouse/users.xml" "$CH_DIR/users.xml"
        rm -rf "$CH_DIR/config.d"
        if [[ -n "${CLICKHOUSE_EXTRA_CONFIG:-}" ]]; then
            mkdir -p "$CH_DIR/config.d"
            cp "$CLICKHOUSE_EXTRA_CONFIG" "$CH_DIR/config.d/"
        fi
        rm -f "$PID_FILE"
        log "starting $bin (http 127.0.0.1:$HTTP_PORT, tcp 127.0.0.1:$TCP_PORT, dir $CH_DIR)"
        # setsid: a session of its own, so the server outlives the caller's terminal and
        # Ctrl-C. -w: $! stays the server's pid even if setsid has to fork.
        (cd "$CH_DIR" && exec setsid -w "$bin" --config-file="$CH_DIR/config.xml" --pidfile="$PID_FILE" \
            </dev/null >"$CH_DIR/log/stdout.log" 2>&1) &
        pid=$!
    fi

    if ! wait_http "$PING_URL" "${CLICKHOUSE_START_TIMEOUT:-60}" "$pid"; then
        if kill -0 "$pid" 2>/dev/null; then log "no answer from $PING_URL within ${CLICKHOUSE_START_TIMEOUT:-60} s"
        else log "the server exited during startup"
        fi
        print_log_tail
        stop_pid "$(server_pid || echo "$pid")"
        exit 1
    fi
    log "started (pid $(server_pid || echo "$pid")) in ${SECONDS} s"
    # system.query_log only exists after the first flush that follows a logged query.
    if ! { curl -fsS --max-time 10 "${PING_URL%/ping}/" --data-binary 'SELECT 1' -o /dev/null \
           && curl -fsS --max-time 10 "${PING_URL%/ping}/" --data-binary 'SYSTEM FLUSH LOGS'; }; then
        log "warning: warm-up query / SYSTEM FLUSH LOGS failed"
    fi
    echo "running on port $HTTP_PORT"
}

cmd_stop() {
    local pid
    if pid="$(server_pid)"; then
        log "stopping pid $pid (port $HTTP_PORT)"
        stop_pid "$pid"
        log "stopped"
    elif wait_http "$PING_URL" 0; then
        log "something answers on port $HTTP_PORT but it was not started from $CH_DIR; not touching it"
    else
        log "not running (port $HTTP_PORT)"
    fi
    rm -f "$PID_FILE"
    if [[ "$purge" == 1 ]]; then
        log "purging $CH_DIR"
        rm -rf -- "$CH_DIR"
    fi
}

"cmd_$cmd"
