#!/usr/bin/env bash
# Runs every test of the project on a fresh machine: checks the toolchain, installs what the
# tests need, builds every target (so benches and binaries can't rot), then runs the suites.
# Usage: scripts/test.sh            (CI calls this same script through .ci/run)
set -euo pipefail
cd "$(dirname "$0")/.."

log() { printf '\n==> %s\n' "$*"; }

if ! command -v python3 >/dev/null 2>&1 || ! python3 -c 'import venv' >/dev/null 2>&1; then
  if command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
    apt-get update -qq && apt-get install -y -qq python3 python3-venv >/dev/null
  fi
fi
if ! command -v curl >/dev/null 2>&1; then
  if command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
    apt-get update -qq && apt-get install -y -qq curl >/dev/null
  fi
fi

# The full build (--features kafka) compiles rdkafka's bundled librdkafka with its own configure
# script and make (C and C++); the default build needs neither (checked below).
need_apt=()
command -v make >/dev/null 2>&1 || need_apt+=(make)
command -v perl >/dev/null 2>&1 || need_apt+=(perl)
command -v g++ >/dev/null 2>&1 || need_apt+=(g++)
if [ ${#need_apt[@]} -gt 0 ]; then
  if command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
    log "installing ${need_apt[*]}"
    apt-get update -qq && apt-get install -y -qq "${need_apt[@]}" >/dev/null
  else
    echo "missing build tools: ${need_apt[*]}" >&2
    exit 1
  fi
fi

if ! command -v cargo >/dev/null 2>&1; then
  echo "cargo is required: install Rust with rustup (https://rustup.rs)" >&2
  exit 1
fi

# Node.js and npm build and check the widgets; Debian's Chromium runs their browser tests.
need_apt=()
command -v node >/dev/null 2>&1 || need_apt+=(nodejs)
command -v npm >/dev/null 2>&1 || need_apt+=(npm)
[ -x /usr/bin/chromium ] || need_apt+=(chromium)
if [ ${#need_apt[@]} -gt 0 ]; then
  if command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
    log "installing ${need_apt[*]}"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_apt[@]}" >/dev/null
  else
    echo "missing: ${need_apt[*]} (needed for the widget build and browser tests)" >&2
    exit 1
  fi
fi

# A real ClickHouse server for the ClickHouse store's tests (installed from PyPI on first use).
log "starting ClickHouse"
clickhouse_dir="target/clickhouse-test"
kafka_dir="target/kafka-test"
trap 'scripts/clickhouse.sh stop "$clickhouse_dir"; scripts/kafka.sh stop "$kafka_dir"' EXIT
CRM_TEST_CLICKHOUSE_URL="$(scripts/clickhouse.sh start "$clickhouse_dir")"
export CRM_TEST_CLICKHOUSE_URL
echo "ClickHouse at $CRM_TEST_CLICKHOUSE_URL"

# A real Kafka-protocol broker (tansu) for the Kafka event log's tests.
log "starting the Kafka broker (tansu)"
CRM_TEST_KAFKA_BROKERS="$(scripts/kafka.sh start "$kafka_dir")"
export CRM_TEST_KAFKA_BROKERS
echo "Kafka (tansu) at $CRM_TEST_KAFKA_BROKERS"

# The knowledge-base search's sentence-embedding model (real weights, for shared/search's tests).
log "installing the embedding model (all-MiniLM-L6-v2)"
CRM_EMBEDDING_MODEL="$(scripts/fetch-model.sh)"
export CRM_EMBEDDING_MODEL
echo "embedding model in $CRM_EMBEDDING_MODEL"

# An HTML5 validator (html5lib's strict parser) for the help centre's pages.
CRM_TEST_HTML_VALIDATOR="$(scripts/html-validator.sh)"
export CRM_TEST_HTML_VALIDATOR
# Incremental compilation caches pay off only on a second build in the same tree; a fresh clone
# (CI) builds once, so it would write gigabytes of cache for nothing. A developer can set it back.
export CARGO_INCREMENTAL="${CARGO_INCREMENTAL:-0}"
avail_kib=$(df -Pk . | awk 'NR==2 {print $4}')
if [ "${avail_kib:-0}" -lt $((8 * 1024 * 1024)) ]; then
  echo "warning: $((avail_kib / 1024)) MiB free here; a fresh build and test run needs about 8 GiB" >&2
fi

log "checking the widgets: syntax, size budgets, committed builds up to date"
node --check widgets/tracking.js
node --check widgets/forms-embed.js
widgets/build.sh --check
widgets/dashboard/build.sh --check

log "checking that the default build of crm needs no cmake, libcurl or OpenSSL"
cargo tree -p crm -e normal,build --locked > target/crm-default-tree.txt
heavy=$(grep -oE ' (cmake|curl-sys|openssl-sys) v[0-9.]+' target/crm-default-tree.txt | sort -u | tr '\n' ' ' || true)
if [ -n "$heavy" ]; then
  echo "the default build of crm (what \`cargo run -p crm\` and \`cargo install --path cli\` build) pulls in:$heavy" >&2
  echo "a newcomer without those C libraries and tools cannot build it; keep them behind a feature" >&2
  exit 1
fi
cargo tree -p crm -e normal --locked --features kafka | grep -q ' rdkafka v' || { echo "the kafka feature no longer brings rdkafka" >&2; exit 1; }

log "building every target (default features, as a newcomer builds them)"
cargo build --workspace --all-targets --locked

log "running the test suites (default features)"
set +e
cargo test --workspace --locked --no-fail-fast --lib --bins --tests 2>&1 | tee target/test-output.txt
status=${PIPESTATUS[0]}
set -e

log "running the widget tests in headless Chromium (screenshots: target/widget-screenshots/)"
set +e
CRM_BIN=target/debug/crm widgets/test/run.sh 2>&1 | tee target/widget-test-output.txt
widget_status=${PIPESTATUS[0]}
set -e
widget_passed=$(grep -Eo '^# pass [0-9]+' target/widget-test-output.txt | awk '{s+=$3} END {print s+0}')
widget_failed=$(grep -Eo '^# fail [0-9]+' target/widget-test-output.txt | awk '{s+=$3} END {print s+0}')
if [ "$widget_status" -ne 0 ] && [ "$widget_failed" -eq 0 ]; then
  widget_failed=1 # the runner itself failed (missing browser, npm…)
fi

log "fuzzing the API against its OpenAPI document (Schemathesis)"
set +e
scripts/schemathesis.sh target/debug/crm 2>&1 | tee target/schemathesis-output.txt
fuzz_status=${PIPESTATUS[0]}
set -e
fuzz_passed=0 fuzz_failed=0
if [ "$fuzz_status" -eq 0 ]; then fuzz_passed=1; else fuzz_failed=1; fi

log "building and testing the full build (--features kafka: the scale-out suites on tansu + ClickHouse)"
set +e
cargo build -p crm --features kafka --all-targets --locked
full_build=$?
cargo test -p crm --features kafka --locked --no-fail-fast --bins --test kafka 2>&1 | tee target/test-output-full.txt
full_status=${PIPESTATUS[0]}
set -e
if [ "$full_build" -ne 0 ] || [ "$full_status" -ne 0 ]; then status=1; fi

# deploy/compose.yaml's fleet as processes (scripts/fleet.sh), on the same servers and binary.
log "the scale-out fleet without containers (scripts/fleet.sh)"
set +e
FLEET_CLICKHOUSE_URL="$CRM_TEST_CLICKHOUSE_URL" FLEET_KAFKA_BROKERS="$CRM_TEST_KAFKA_BROKERS" CRM=target/debug/crm scripts/fleet.sh
fleet_status=$?
set -e
fleet_passed=0 fleet_failed=0
if [ "$fleet_status" -eq 0 ]; then fleet_passed=1; else fleet_failed=1; status=1; fi

passed=$(cat target/test-output.txt target/test-output-full.txt | grep -Eo 'test result: [A-Za-z]+\. [0-9]+ passed; [0-9]+ failed' | awk '{s+=$4} END {print s+0}')
failed=$(cat target/test-output.txt target/test-output-full.txt | grep -Eo 'test result: [A-Za-z]+\. [0-9]+ passed; [0-9]+ failed' | awk '{s+=$6} END {print s+0}')

echo
echo "rust: ${passed} passed, ${failed} failed; widgets (Chromium): ${widget_passed} passed, ${widget_failed} failed; API fuzzing: ${fuzz_passed} passed, ${fuzz_failed} failed; fleet: ${fleet_passed} passed, ${fleet_failed} failed"
echo "$((passed + widget_passed + fuzz_passed + fleet_passed)) passed, $((failed + widget_failed + fuzz_failed + fleet_failed)) failed"
if [ "$status" -ne 0 ] || [ "$widget_status" -ne 0 ] || [ "$fuzz_status" -ne 0 ]; then
  exit 1
fi
