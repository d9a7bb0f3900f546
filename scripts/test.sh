#!/usr/bin/env bash
# Runs every test against a real ClickHouse: starts (installing if needed) a local
# server on a loopback port, then `cargo test`. Extra arguments go to cargo test.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

export CLICKHOUSE_HTTP_PORT="${CLICKHOUSE_HTTP_PORT:-18123}"
export LOGPROXY_TEST_CLICKHOUSE_URL="http://127.0.0.1:${CLICKHOUSE_HTTP_PORT}"

started_here=0
if ! scripts/clickhouse.sh status >/dev/null 2>&1; then
    scripts/clickhouse.sh start
    started_here=1
fi
cleanup() {
    if [[ "$started_here" == 1 ]]; then
        scripts/clickhouse.sh stop >/dev/null 2>&1 || true
    fi
}
trap cleanup EXIT

cargo test --locked "$@"
