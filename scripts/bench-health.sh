#!/usr/bin/env bash
# The health batch benchmark: builds health_bench in release, installs DuckDB from PyPI into
# bench/.cache/duckdb-venv if missing, then runs bench/health_vs_duckdb.py, which writes the
# "Health batch" section of bench/RESULTS.md.
# Usage: scripts/bench-health.sh [--events 10000000] [--accounts 10000] [--repeat 3]
set -euo pipefail
cd "$(dirname "$0")/.."
if ! python3 -c 'import venv, ensurepip' >/dev/null 2>&1; then
  if command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
    apt-get update -qq && apt-get install -y -qq python3-venv >/dev/null
  else
    echo "python3-venv is missing" >&2; exit 1
  fi
fi
cargo build --release --locked -p crm-bench --bin health_bench
python3 bench/health_vs_duckdb.py "$@"
