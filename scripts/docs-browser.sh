#!/usr/bin/env bash
# Loads the API reference page, GET /docs, in a real browser with every other host
# unreachable (CONTRACT.md §16): it must show the logs operation with its parameters without
# a click, and a call made from the page ("Try it out" with an API key) must get 200.
#
# Usage: scripts/docs-browser.sh
#
#   1. Debian's chromium and chromium-driver (the same version, from one source package) are
#      installed if missing; python3 drives the browser over WebDriver, with the standard
#      library alone
#   2. cargo build --locked; a fresh database lp_docs_<pid> on the ClickHouse at
#      LOGPROXY_TEST_CLICKHOUSE_URL (default http://127.0.0.1:18123, which must be running),
#      migrated and seeded (demo-app-1..2, the last hour)
#   3. `logproxy serve` on a free port with the demo tenant of config/default.toml (key
#      lp_demo_key_1, apps demo-app-1..5)
#   4. scripts/docs-browser.py: headless chromium whose every request to another host (or
#      another port) goes to a proxy of the script's own that refuses and records it, and
#      whose DNS knows no name. It fails on any request the page makes that is not to the
#      service, on any error in the browser's console (a Content-Security-Policy violation
#      is one), when the logs operation or one of its parameters is not shown at load, and
#      when the call made from the page does not get 200
#   5. on exit: the browser, its driver and the service are stopped, the database dropped,
#      the temporary files removed
#
# Runs as root or with sudo, without a terminal (CI=true); needs rustup's cargo, and Debian's
# packages the first time. About 10 s once chromium and the build are there.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
. scripts/lib.sh

CLICKHOUSE_URL="${LOGPROXY_TEST_CLICKHOUSE_URL:-http://127.0.0.1:18123}"
KEY="lp_demo_key_1"
DB="lp_docs_$$"

ensure_packages curl chromium chromium-driver
command -v python3 >/dev/null 2>&1 || ensure_packages python3

own_service_prepare
cat >"$work/config.toml" <<EOF
[server]
bind = "127.0.0.1:$PORT"
workers = 2

[clickhouse]
urls = ["$CLICKHOUSE_URL"]
database = "$DB"

[logging]
level = "warn"

[auth]
enabled = true

[[auth.tenants]]
name = "demo"
api_key_sha256 = ["$("$BIN" hash-key "$KEY")"]
apps = ["demo-app-1", "demo-app-2", "demo-app-3", "demo-app-4", "demo-app-5"]
scopes = ["logs:read"]
EOF
own_service_start 2 200 1

mkdir "$work/browser"
python3 scripts/docs-browser.py "http://127.0.0.1:$PORT" "$KEY" demo-app-1 "$work/browser"
