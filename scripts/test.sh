#!/usr/bin/env bash
# The project's checks and tests, as CI runs them (.ci/run calls exactly `bash scripts/test.sh`).
#
# Usage: scripts/test.sh [cargo test args...]
#
#   1. cargo fmt --check; cargo clippy --all-targets --locked -- -D warnings
#   2. apt-get installs what is missing: curl and clickhouse-server, and redis-server,
#      nginx-light and prometheus (promtool) for the tests that will use them; their
#      services are not started
#   3. promtool check rules / test rules / check config on deploy/prometheus (the alerts, their
#      unit tests and the scrape config)
#   4. starts two local ClickHouse servers, "replicas" on CLICKHOUSE_HTTP_PORT (default 18123)
#      and the next port; one that already answers is used as it is. On exit it stops the
#      servers it started, and only those; on those it first drops the test databases
#      that earlier runs left.
#   5. cargo test --locked "$@" with
#        LOGPROXY_TEST_CLICKHOUSE_URL=http://127.0.0.1:18123
#        LOGPROXY_TEST_CLICKHOUSE_URLS=http://127.0.0.1:18123,http://127.0.0.1:18124
#      without arguments: every test but the serial group, then the serial group (names
#      starting with `serial_`: timing against probes and stalls) one at a time
#   6. scripts/schemathesis.sh: schemathesis against the live service and its /openapi.json
#   7. scripts/openapi-client.sh: a Python client generated from the live /openapi.json calls the service
#   8. scripts/docs-browser.sh: the page at /docs in headless chromium
#   9. scripts/readme-check.sh: the commands README.md and docs/ show, against the demo
#      (debug build), scripts/cluster.sh and scripts/fleet.sh started as the pages say
#  10. scripts/image-check.sh: the Dockerfile's runtime stage in a debootstrapped Debian root
#      file system, without a container engine (docs/image.md); it says so when it skips
#
# Runs as root or with sudo, without a terminal (CI=true); needs rustup's cargo.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
. scripts/lib.sh

need_cargo
if ! cargo fmt --version >/dev/null 2>&1 || ! cargo clippy --version >/dev/null 2>&1; then
    rustup component add rustfmt clippy
fi
cargo fmt --check
cargo clippy --all-targets --locked -- -D warnings

ensure_packages curl clickhouse-server clickhouse-client redis-server nginx-light prometheus

promtool check rules deploy/prometheus/alerts.yml
promtool test rules deploy/prometheus/alerts_test.yml
promtool check config deploy/prometheus/prometheus.yml

first="${CLICKHOUSE_HTTP_PORT:-18123}"
ports=("$first" "$(( first + 1 ))")
started=()
stop_started() { (( ${#started[@]} == 0 )) || scripts/clickhouse.sh stop "${started[@]}" || true; }
trap stop_started EXIT
for port in "${ports[@]}"; do
    scripts/clickhouse.sh status "$port" >/dev/null || started+=("$port")
done
scripts/clickhouse.sh start "${ports[@]}" >/dev/null
# The databases earlier runs' tests left on the servers started here (their data folders
# persist): a thousand of them kept ClickHouse 18.16's background pool at a quarter of a core.
for port in "${started[@]}"; do
    url="http://127.0.0.1:$port"
    for db in $(sql "$url" "SELECT name FROM system.databases WHERE name LIKE 'lp_test_%'"); do
        sql "$url" "DROP DATABASE IF EXISTS $db" >/dev/null
    done
done

export LOGPROXY_TEST_CLICKHOUSE_URL="http://127.0.0.1:${ports[0]}"
export LOGPROXY_TEST_CLICKHOUSE_URLS="http://127.0.0.1:${ports[0]},http://127.0.0.1:${ports[1]}"
if (( $# > 0 )); then
    cargo test --locked "$@"
else
    # The serial group: tests whose names start with `serial_` measure time against
    # ClickHouse's probes and stalls (or bound a latency), which a neighbouring test's CPU
    # burst on 2 cores would blur; they run after the others, one at a time.
    cargo test --locked -- --skip serial_
    cargo test --locked --test api serial_ -- --test-threads 1
fi
scripts/schemathesis.sh
scripts/openapi-client.sh
scripts/docs-browser.sh
scripts/readme-check.sh
scripts/image-check.sh
