#!/usr/bin/env bash
# Local ClickHouse instance for logproxy development and tests.
#
# Usage: scripts/clickhouse.sh start|stop [--purge]|status
#
# Runs ONE clickhouse-server (Debian's package, 18.16 on bookworm) from a
# git-ignored folder inside the project, listening on 127.0.0.1 only.
#
# Environment:
#   CLICKHOUSE_HTTP_PORT  HTTP port (default 18123)
#   CLICKHOUSE_TCP_PORT   native protocol port (default: HTTP port + 10000,
#                         or HTTP port - 10000 if that would exceed 65535)
#   CLICKHOUSE_DIR        instance folder (default $PROJECT_ROOT/.clickhouse/<http_port>)
#   CLICKHOUSE_PURGE=1    same as `stop --purge` (delete the instance folder)
#   CLICKHOUSE_START_TIMEOUT  seconds to wait for /ping (default 60)
#
# Only the HTTP and TCP ports are opened: no interserver_http_port (not needed
# without replicated tables), no https/secure ports, so several instances with
# different CLICKHOUSE_HTTP_PORT values can run side by side.
# Works as root (18.16 has no "owner of data directory" check).
set -euo pipefail

SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
PROJECT_ROOT="$(cd "$SCRIPT_DIR/.." && pwd)"

HTTP_PORT="${CLICKHOUSE_HTTP_PORT:-18123}"
if [[ -n "${CLICKHOUSE_TCP_PORT:-}" ]]; then
    TCP_PORT="$CLICKHOUSE_TCP_PORT"
elif (( HTTP_PORT + 10000 <= 65535 )); then
    TCP_PORT=$(( HTTP_PORT + 10000 ))
else
    TCP_PORT=$(( HTTP_PORT - 10000 ))
fi
CH_DIR="${CLICKHOUSE_DIR:-$PROJECT_ROOT/.clickhouse/$HTTP_PORT}"
[[ "$CH_DIR" == /* ]] || CH_DIR="$PWD/$CH_DIR"   # config.xml needs absolute paths
CH_DIR="${CH_DIR%/}"
START_TIMEOUT="${CLICKHOUSE_START_TIMEOUT:-60}"
HOST=127.0.0.1

PID_FILE="$CH_DIR/clickhouse-server.pid"
LOG_DIR="$CH_DIR/log"
SERVER_LOG="$LOG_DIR/clickhouse-server.log"
ERR_LOG="$LOG_DIR/clickhouse-server.err.log"
STDOUT_LOG="$LOG_DIR/stdout.log"

log() { echo "clickhouse.sh: $*" >&2; }
die() { log "$*"; exit 1; }

for p in "$HTTP_PORT" "$TCP_PORT"; do
    [[ "$p" =~ ^[0-9]+$ ]] && (( p > 0 && p <= 65535 )) || die "invalid port: $p"
done
[[ "$HTTP_PORT" != "$TCP_PORT" ]] || die "HTTP and TCP port must differ ($HTTP_PORT)"

# ---------------------------------------------------------------- install ---

find_server_bin() {
    if [[ -n "${CLICKHOUSE_SERVER_BIN:-}" ]]; then
        echo "$CLICKHOUSE_SERVER_BIN"; return 0
    fi
    # /usr/sbin is often not in PATH for non-root users.
    command -v clickhouse-server 2>/dev/null && return 0
    [[ -x /usr/sbin/clickhouse-server ]] && { echo /usr/sbin/clickhouse-server; return 0; }
    return 1
}

as_root() {
    if [[ "$(id -u)" -eq 0 ]]; then
        "$@"
    elif command -v sudo >/dev/null 2>&1; then
        sudo "$@"
    else
        die "need root (or sudo) to run: $*"
    fi
}

ensure_installed() {
    local pkgs=()
    find_server_bin >/dev/null || pkgs+=(clickhouse-server)
    command -v curl >/dev/null 2>&1 || pkgs+=(curl)
    (( ${#pkgs[@]} )) || return 0
    command -v apt-get >/dev/null 2>&1 || die "missing ${pkgs[*]} and apt-get is not available"

    log "installing ${pkgs[*]} via apt-get"
    as_root env DEBIAN_FRONTEND=noninteractive apt-get update -q
    if [[ " ${pkgs[*]} " == *" clickhouse-server "* ]] \
        && ! command -v clickhouse-client >/dev/null 2>&1 \
        && apt-cache show clickhouse-client >/dev/null 2>&1; then
        pkgs+=(clickhouse-client)
    fi
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${pkgs[@]}"
    find_server_bin >/dev/null || die "clickhouse-server still not found after apt-get install"
}

# ------------------------------------------------------------------- ping ---

# Succeeds if GET /ping answers "Ok.". Uses curl, else bash /dev/tcp, else python3.
http_ping() {
    local port="$1" body=""
    if command -v curl >/dev/null 2>&1; then
        body="$(curl -fsS --max-time 2 "http://$HOST:$port/ping" 2>/dev/null)" || return 1
    else
        body="$(timeout 3 bash -c '
            exec 3<>"/dev/tcp/$0/$1" || exit 1
            printf "GET /ping HTTP/1.0\r\nHost: %s\r\n\r\n" "$0" >&3
            tail -n 1 <&3' "$HOST" "$port" 2>/dev/null)" || body=""
        if [[ -z "$body" ]] && command -v python3 >/dev/null 2>&1; then
            body="$(python3 - "$HOST" "$port" 2>/dev/null <<'PY'
import sys, urllib.request
print(urllib.request.urlopen("http://%s:%s/ping" % (sys.argv[1], sys.argv[2]), timeout=2).read().decode().strip())
PY
)" || return 1
        fi
    fi
    [[ "${body//[$'\r\n ']/}" == "Ok." ]]
}

# True if something accepts TCP connections on the port.
port_open() {
    timeout 2 bash -c 'exec 3<>"/dev/tcp/$0/$1"' "$HOST" "$1" 2>/dev/null
}

read_pid() {
    local pid
    [[ -f "$PID_FILE" ]] || return 1
    pid="$(tr -dc '0-9' <"$PID_FILE")"
    [[ -n "$pid" ]] && kill -0 "$pid" 2>/dev/null || return 1
    # Guard against a stale pid file whose pid now belongs to another process.
    if [[ -r "/proc/$pid/cmdline" ]] \
        && ! tr '\0' ' ' <"/proc/$pid/cmdline" | grep -qF -- "--config-file=$CH_DIR/config.xml"; then
        return 1
    fi
    echo "$pid"
}

# Server process started from this instance folder (fallback if the pid file is gone).
find_pid() {
    read_pid && return 0
    command -v pgrep >/dev/null 2>&1 || return 1
    pgrep -f -- "--config-file=$CH_DIR/config.xml( |\$)" | head -n 1 | grep . || return 1
}

# ----------------------------------------------------------------- config ---

write_config() {
    mkdir -p "$CH_DIR/data" "$CH_DIR/tmp" "$CH_DIR/user_files" "$CH_DIR/format_schemas" "$LOG_DIR"
    cat >"$CH_DIR/config.xml" <<EOF
<?xml version="1.0"?>
<!-- Generated by scripts/clickhouse.sh; overwritten on every start. -->
<yandex>
    <logger>
        <level>information</level>
        <log>$SERVER_LOG</log>
        <errorlog>$ERR_LOG</errorlog>
        <size>100M</size>
        <count>2</count>
    </logger>

    <listen_host>$HOST</listen_host>
    <http_port>$HTTP_PORT</http_port>
    <tcp_port>$TCP_PORT</tcp_port>
    <!-- No interserver_http_port / https_port / tcp_port_secure on purpose. -->

    <max_connections>4096</max_connections>
    <keep_alive_timeout>10</keep_alive_timeout>
    <max_concurrent_queries>200</max_concurrent_queries>
    <uncompressed_cache_size>268435456</uncompressed_cache_size>
    <mark_cache_size>268435456</mark_cache_size>
    <mlock_executable>false</mlock_executable>

    <path>$CH_DIR/data/</path>
    <tmp_path>$CH_DIR/tmp/</tmp_path>
    <user_files_path>$CH_DIR/user_files/</user_files_path>
    <format_schema_path>$CH_DIR/format_schemas/</format_schema_path>

    <users_config>$CH_DIR/users.xml</users_config>
    <default_profile>default</default_profile>
    <default_database>default</default_database>

    <query_log>
        <database>system</database>
        <table>query_log</table>
        <partition_by>toYYYYMM(event_date)</partition_by>
        <flush_interval_milliseconds>200</flush_interval_milliseconds>
    </query_log>
</yandex>
EOF
    cat >"$CH_DIR/users.xml" <<'EOF'
<?xml version="1.0"?>
<!-- Generated by scripts/clickhouse.sh; overwritten on every start. -->
<yandex>
    <profiles>
        <default>
            <max_memory_usage>2000000000</max_memory_usage>
            <use_uncompressed_cache>0</use_uncompressed_cache>
            <load_balancing>random</load_balancing>
            <log_queries>1</log_queries>
        </default>
    </profiles>
    <users>
        <default>
            <password></password>
            <networks>
                <ip>::1</ip>
                <ip>127.0.0.1</ip>
            </networks>
            <profile>default</profile>
            <quota>default</quota>
        </default>
    </users>
    <quotas>
        <default>
            <interval>
                <duration>3600</duration>
                <queries>0</queries>
                <errors>0</errors>
                <result_rows>0</result_rows>
                <read_rows>0</read_rows>
                <execution_time>0</execution_time>
            </interval>
        </default>
    </quotas>
</yandex>
EOF
}

print_log_tail() {
    local f
    for f in "$STDOUT_LOG" "$ERR_LOG" "$SERVER_LOG"; do
        [[ -s "$f" ]] || continue
        echo "----- tail -n 40 $f -----" >&2
        tail -n 40 "$f" >&2
    done
}

# --------------------------------------------------------------- commands ---

cmd_status() {
    if http_ping "$HTTP_PORT"; then
        echo "running on port $HTTP_PORT"
        return 0
    fi
    echo "not running on port $HTTP_PORT"
    return 1
}

cmd_start() {
    local pid bin started="" waited=0
    if http_ping "$HTTP_PORT"; then
        if pid="$(read_pid)"; then
            log "already running on port $HTTP_PORT (pid $pid, dir $CH_DIR)"
        else
            log "already running on port $HTTP_PORT (something answers /ping; no live pid file in $CH_DIR)"
        fi
        echo "running on port $HTTP_PORT"
        return 0
    fi

    ensure_installed
    bin="$(find_server_bin)"

    if pid="$(read_pid)"; then
        log "server pid $pid exists but does not answer /ping yet; waiting for it"
    else
        if port_open "$HTTP_PORT"; then
            die "port $HTTP_PORT is in use by something that is not answering ClickHouse /ping"
        fi
        if port_open "$TCP_PORT"; then
            die "TCP port $TCP_PORT is in use (set CLICKHOUSE_TCP_PORT)"
        fi
        rm -f "$PID_FILE"
        write_config
        : >"$STDOUT_LOG"
        log "starting $bin (http $HOST:$HTTP_PORT, tcp $HOST:$TCP_PORT, dir $CH_DIR)"
        # Not --daemon: keeps early stderr in stdout.log. setsid+nohup detaches it
        # from the caller's terminal / process group; the server writes its own pid file.
        local launcher=(nohup)
        command -v setsid >/dev/null 2>&1 && launcher=(setsid nohup)
        (
            cd "$CH_DIR"
            exec "${launcher[@]}" "$bin" --config-file="$CH_DIR/config.xml" --pidfile="$PID_FILE" \
                </dev/null >>"$STDOUT_LOG" 2>&1
        ) &
        started=$!
    fi

    local deadline=$(( SECONDS + START_TIMEOUT ))
    until http_ping "$HTTP_PORT"; do
        if (( SECONDS >= deadline )); then
            log "server did not answer http://$HOST:$HTTP_PORT/ping within ${START_TIMEOUT}s"
            print_log_tail
            if [[ -n "$started" ]]; then
                pid="$(read_pid || echo "$started")"
                log "killing pid $pid"
                kill -TERM "$pid" 2>/dev/null || true
            fi
            exit 1
        fi
        # Give up early if the process died (e.g. config error, port in use).
        if (( waited > 20 )) && ! read_pid >/dev/null && ! { [[ -n "$started" ]] && kill -0 "$started" 2>/dev/null; }; then
            log "server process exited during startup"
            print_log_tail
            exit 1
        fi
        sleep 0.1
        waited=$(( waited + 1 ))
    done
    pid="$(read_pid || echo '?')"
    log "started (pid $pid) in ${SECONDS}s"
    # Make sure system.query_log exists right away (it is only created on the
    # first flush after the first logged query). Best effort.
    if command -v curl >/dev/null 2>&1; then
        curl -fsS --max-time 10 "http://$HOST:$HTTP_PORT/" --data-binary 'SELECT 1' >/dev/null 2>&1 \
            && curl -fsS --max-time 10 "http://$HOST:$HTTP_PORT/" --data-binary 'SYSTEM FLUSH LOGS' >/dev/null 2>&1 \
            || log "warning: warm-up query / SYSTEM FLUSH LOGS failed"
    fi
    echo "running on port $HTTP_PORT"
}

cmd_stop() {
    local purge="${CLICKHOUSE_PURGE:-0}" pid
    case "${1:-}" in
        "") ;;
        --purge) purge=1 ;;
        *) die "unknown stop option: $1" ;;
    esac

    if pid="$(find_pid)"; then
        log "stopping pid $pid (port $HTTP_PORT)"
        kill -TERM "$pid" 2>/dev/null || true
        local deadline=$(( SECONDS + 30 ))
        while kill -0 "$pid" 2>/dev/null; do
            if (( SECONDS >= deadline )); then
                log "pid $pid still alive after 30s, sending SIGKILL"
                kill -KILL "$pid" 2>/dev/null || true
                deadline=$(( SECONDS + 10 ))
            fi
            sleep 0.1
        done
        local port_deadline=$(( SECONDS + 15 ))
        while port_open "$HTTP_PORT" || port_open "$TCP_PORT"; do
            (( SECONDS < port_deadline )) || die "process exited but port $HTTP_PORT/$TCP_PORT still open"
            sleep 0.1
        done
        rm -f "$PID_FILE"
        log "stopped"
    else
        rm -f "$PID_FILE"
        if http_ping "$HTTP_PORT"; then
            log "something answers on port $HTTP_PORT but it was not started from $CH_DIR; not touching it"
        else
            log "not running (port $HTTP_PORT)"
        fi
    fi

    if [[ "$purge" == 1 ]]; then
        log "purging $CH_DIR"
        rm -rf -- "$CH_DIR"
    fi
}

case "${1:-}" in
    start)  cmd_start ;;
    stop)   shift; cmd_stop "$@" ;;
    status) cmd_status ;;
    *)
        echo "usage: $0 start | stop [--purge] | status" >&2
        exit 2
        ;;
esac
