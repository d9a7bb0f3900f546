#!/usr/bin/env bash
# Fuzzes the live service against its own /openapi.json with schemathesis, and fails on any
# finding: the document must say exactly what the server does (CONTRACT.md §9).
#
# Usage: scripts/schemathesis.sh [extra `st run` args...]
#
#   1. a virtualenv (python3 -m venv; Debian's python3-venv is installed if missing) with
#      schemathesis==$SCHEMATHESIS_VERSION, made once and reused; ST_VENV sets where
#      (default target/schemathesis-venv)
#   2. cargo build --locked; a fresh database lp_schemathesis_<pid> on the ClickHouse at
#      LOGPROXY_TEST_CLICKHOUSE_URL (default http://127.0.0.1:18123, which must be running),
#      migrated and seeded (demo-app-1..3) with the binary
#   3. `logproxy serve` on a free port: auth on, one tenant with a key for every app, rate
#      limits high enough that fuzzing is not throttled, CORS on for one origin
#   4. st run http://127.0.0.1:PORT/openapi.json --checks all, a fixed seed (ST_SEED, default
#      1), at most ST_MAX_EXAMPLES cases per operation (default 1000), the tenant's
#      Authorization header and the allowed Origin; no crash cache or Hypothesis files kept,
#      and warnings fail the run too. The exit status is schemathesis's: non-zero on any finding
#   5. on exit: the service is stopped, the database dropped, the temporary files removed
#
# Runs as root or with sudo, without a terminal (CI=true); needs network access to PyPI
# the first time, and rustup's cargo.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
. scripts/lib.sh

SCHEMATHESIS_VERSION=4.32.5
CLICKHOUSE_URL="${LOGPROXY_TEST_CLICKHOUSE_URL:-http://127.0.0.1:18123}"
VENV="${ST_VENV:-target/schemathesis-venv}"
SEED="${ST_SEED:-1}"
MAX_EXAMPLES="${ST_MAX_EXAMPLES:-1000}"
KEY="lp_schemathesis_key"
DB="lp_schemathesis_$$"
ORIGIN="https://dashboard.example"

# ------------------------------------------------------------------ the venv ---
ensure_packages curl
command -v python3 >/dev/null 2>&1 || ensure_packages python3
pip_pinned "$VENV" "schemathesis==$SCHEMATHESIS_VERSION"

# ------------------------------------------------------------ the service ---
own_service_prepare
KEY_SHA256="$("$BIN" hash-key "$KEY")"
cat >"$work/config.toml" <<EOF
[server]
bind = "127.0.0.1:$PORT"
workers = 2

[clickhouse]
urls = ["$CLICKHOUSE_URL"]
database = "$DB"

[rate_limit]
requests_per_second = 100000
burst = 100000

[logging]
level = "warn"

[cors]
allowed_origins = ["$ORIGIN"]

[auth]
enabled = true

[[auth.tenants]]
name = "schemathesis"
api_key_sha256 = ["$KEY_SHA256"]
apps = ["*"]
scopes = ["logs:read"]
EOF
own_service_start 3 200 24

# -------------------------------------------------------------- the fuzzing ---
# No crash cache (it would replay an earlier run's failures) and Hypothesis's files in the
# temporary folder, so a run is its seed's alone and leaves nothing in the tree. A warning
# (say, an operation that only ever answered errors) fails the run too.
cat >"$work/schemathesis.toml" <<EOF
[cache]
enabled = false

# Every warning fails the run but validation_mismatch (see the logs path below), which
# schemathesis reads from the run as a whole, not per operation.
[warnings]
fail-on = ["missing_auth", "missing_test_data", "base_url_mismatch", "missing_deserializer", "unused_openapi_auth", "unsupported_regex", "method_not_allowed", "constants_extraction", "unmatched_filter", "unresolvable_reference", "low_valid_rate", "rate_limited", "dictionary_mismatch", "timeout_units"]

# A cursor or a start/end pair can be schema-valid and still name nothing: a cursor is
# checked against its app, log_type and level and for alteration (schemathesis can only
# invent or reuse one), and start >= end is a window of no time. Their answer is the
# documented 400 invalid_cursor or invalid_time_range (tested in tests/api/paging.rs), so
# on the logs path alone 400 counts as accepting schema-valid data.
# For the same reason most generated requests there carry a cursor that is refused, which
# schemathesis warns of as a validation mismatch: the one warning that does not fail the
# run (above); it is still printed.
[[operations]]
include-path = "/v1/apps/{app_id}/logs"
checks.positive_data_acceptance.expected-statuses = ["2xx", "3xx", "400", "401", "403", "404", "409", "429", "5xx"]
EOF
# Every request comes from the allowed origin, so the CORS headers that every answer then
# carries are checked against the document too. The live tail (`.../logs/tail`) is left out:
# a 200 there is a Server-Sent Events stream that stays open for `tail.max_stream_seconds`,
# which schemathesis cannot read to its end; its answers (the stream, and the errors before
# it, as JSON) are tested by hand in tests/api/tail.rs.
log "schemathesis $SCHEMATHESIS_VERSION against http://127.0.0.1:$PORT (seed $SEED, $MAX_EXAMPLES examples)"
HYPOTHESIS_STORAGE_DIRECTORY="$work/hypothesis" \
    "$VENV/bin/st" --config-file "$work/schemathesis.toml" run "http://127.0.0.1:$PORT/openapi.json" \
    --checks all \
    --seed "$SEED" \
    --max-examples "$MAX_EXAMPLES" \
    --header "Authorization: Bearer $KEY" \
    --header "Origin: $ORIGIN" \
    --generation-database none \
    --exclude-path '/v1/apps/{app_id}/logs/tail' \
    --no-color \
    "$@"
