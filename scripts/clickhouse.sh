#!/usr/bin/env bash
# Starts or stops a real ClickHouse server (26.9, from the chdb-core wheel on PyPI) for tests
# and benchmarks. `start DIR` prints the HTTP URL; data lives in DIR and survives restarts.
#   scripts/clickhouse.sh start target/clickhouse   → http://127.0.0.1:PORT
#   scripts/clickhouse.sh stop target/clickhouse
set -euo pipefail
cd "$(dirname "$0")/.."

CHDB_VERSION=26.9.0
tools="${CRM_TOOLS_DIR:-$HOME/.cache/crm-tools}"
venv="$tools/chdb-$CHDB_VERSION"

source scripts/lib.sh

install() {
  ensure_venv_package "$venv" "chdb-core==$CHDB_VERSION" "\"$venv/bin/python\" -c 'import chdb'"
}

cmd="${1:-}"
dir="${2:-target/clickhouse}"
mkdir -p "$dir"
dir="$(cd "$dir" && pwd)"
case "$cmd" in
  start)
    install
    if [ -f "$dir/server.pid" ] && kill -0 "$(cat "$dir/server.pid")" 2>/dev/null; then
      cat "$dir/url"
      exit 0
    fi
    http_port="${CLICKHOUSE_HTTP_PORT:-$(free_port)}"
    tcp_port="${CLICKHOUSE_TCP_PORT:-$(free_port)}"
    nohup "$venv/bin/python" scripts/clickhouse_server.py "$dir" "$http_port" "$tcp_port" >"$dir/server.log" 2>&1 &
    echo $! >"$dir/server.pid"
    url="http://127.0.0.1:$http_port"
    for _ in $(seq 1 120); do
      if curl -fsS "$url/ping" >/dev/null 2>&1; then
        echo "$url" >"$dir/url"
        echo "$url"
        exit 0
      fi
      if ! kill -0 "$(cat "$dir/server.pid")" 2>/dev/null; then
        echo "clickhouse exited; see $dir/server.log" >&2
        tail -20 "$dir/server.log" >&2
        exit 1
      fi
      sleep 0.5
    done
    echo "clickhouse did not answer /ping within 60 s" >&2
    exit 1
    ;;
  stop)
    stop_pidfile "$dir/server.pid" "$dir/url"
    ;;
  *)
    echo "usage: $0 start|stop [DIR]" >&2
    exit 2
    ;;
esac
