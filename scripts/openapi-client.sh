#!/usr/bin/env bash
# Generates a Python client from the live /openapi.json with a pinned generator and calls
# the running service through it: the document must be one that client generators read as
# the Mixpeek document reads, with `log_type`, `hours`, `level` and `limit` as four
# arguments of the logs operation (CONTRACT.md §12).
#
# Usage: scripts/openapi-client.sh
#
#   1. the virtualenv of scripts/schemathesis.sh (ST_VENV, default target/schemathesis-venv;
#      made here if missing) gets openapi-python-client==$GENERATOR_VERSION and the
#      generated client's own dependencies, pinned
#   2. cargo build --locked; a fresh database lp_openapi_client_<pid> on the ClickHouse at
#      LOGPROXY_TEST_CLICKHOUSE_URL (default http://127.0.0.1:18123, which must be running),
#      migrated and seeded (demo-app-1)
#   3. `logproxy serve` on a free port: auth on, one key for every app, a rate limit of
#      1 request per second with a burst of 1 for the app `limited-app`, and `critical` among
#      the accepted levels
#   4. openapi-python-client generate from http://127.0.0.1:PORT/openapi.json (a warning
#      from the generator fails the run); then the levels are reloaded without `critical`
#   5. scripts/openapi-client.py calls the service through the generated client, with
#      `log_type`, `hours`, `level` and `limit` as arguments: a 200, a 400 (`critical`, which
#      the client still offers) and a 429; it prints `openapi-client: N passed, N failed`
#   6. on exit: the service is stopped, the database dropped, the temporary files removed
#
# Runs as root or with sudo, without a terminal (CI=true); needs network access to PyPI
# the first time, and rustup's cargo. A few seconds once the venv and the build are there.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
. scripts/lib.sh

GENERATOR_VERSION=0.29.1
# The generator (which brings httpx and attrs), and python-dateutil, which the client it
# generates imports too.
PACKAGES=("openapi-python-client==$GENERATOR_VERSION" "python-dateutil==2.9.0.post0")
CLICKHOUSE_URL="${LOGPROXY_TEST_CLICKHOUSE_URL:-http://127.0.0.1:18123}"
VENV="$(realpath -m "${ST_VENV:-target/schemathesis-venv}")"
KEY="lp_openapi_client_key"
DB="lp_openapi_client_$$"

ensure_packages curl
command -v python3 >/dev/null 2>&1 || ensure_packages python3
pip_pinned "$VENV" "${PACKAGES[@]}"

own_service_prepare
# The config, with `levels` as the line after [logs] (the reload below drops `critical`).
write_config() {
cat >"$work/config.toml" <<EOF
[logs]
$1

[server]
bind = "127.0.0.1:$PORT"
workers = 1

[clickhouse]
urls = ["$CLICKHOUSE_URL"]
database = "$DB"

[[rate_limit.overrides]]
app_id = "limited-app"
requests_per_second = 1
burst = 1

[logging]
level = "warn"

[auth]
enabled = true

[[auth.tenants]]
name = "client"
api_key_sha256 = ["$KEY_SHA256"]
apps = ["*"]
scopes = ["logs:read"]
EOF
}
KEY_SHA256="$("$BIN" hash-key "$KEY")"
write_config 'levels = ["log", "debug", "info", "warn", "error", "critical"]'
own_service_start 1 50 2

log "openapi-python-client $GENERATOR_VERSION from http://127.0.0.1:$PORT/openapi.json"
# The generator runs ruff (from the venv) on what it wrote.
PATH="$VENV/bin:$PATH" openapi-python-client generate --url "http://127.0.0.1:$PORT/openapi.json" \
    --meta none --output-path "$work/logproxy_client" >"$work/generate.log" 2>&1 \
    || { cat "$work/generate.log" >&2; die "openapi-python-client could not generate a client"; }
# The generator reports what it could not read as warnings and still exits 0: a client
# without them is part of the test.
if grep -q -i 'warning' "$work/generate.log"; then
    cat "$work/generate.log" >&2
    die "openapi-python-client warned about the document"
fi
# The operator drops `critical` from the levels (SIGHUP reloads them, and the document with
# them): the client generated before still offers it, and the service now refuses it.
write_config 'levels = ["log", "debug", "info", "warn", "error"]'
kill -HUP "$pid"
deadline=$(( SECONDS + 10 ))
while [[ "$(curl -fsS --max-time 2 "http://127.0.0.1:$PORT/openapi.json")" == *'"critical"'* ]]; do
    (( SECONDS < deadline )) || die "the service did not reload its levels"
    sleep 0.1
done
PYTHONPATH="$work" "$VENV/bin/python" scripts/openapi-client.py \
    "http://127.0.0.1:$PORT" "$KEY"
