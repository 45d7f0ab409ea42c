#!/usr/bin/env bash
# Crash recovery of `crm up` by hand: load it at a rate it keeps up with (pinned as in
# profile-up.sh), SIGKILL it mid-load, start it again on the same data dir and time (from the
# restart) until `/readyz` answers 200 and until the consumer lag is 0, i.e. every acknowledged
# event is stored: the replay of what was acknowledged but not yet durable, plus startup.
#
# Usage: bench/recovery.sh          (release binaries: `cargo build --release -p crm -p crm-bench --bins`)
#   EXTRA="--store redb"            `crm up` flags for both starts (e.g. the first store design)
#   RATE, DURATION                  load (defaults 500 req/s x 10 events = 5 K events/s, 20 s)
set -euo pipefail
cd "$(dirname "$0")/.."

RATE=${RATE:-500}
DURATION=${DURATION:-20}
BIN=target/release
WORK=target/recovery
rm -rf "$WORK" && mkdir -p "$WORK"

pin() { if [ "$(nproc)" -ge 2 ] && command -v taskset >/dev/null; then exec taskset -c "$1" "${@:2}"; else exec "${@:2}"; fi; }
now_ms() { date +%s%3N; }

start() {
  # shellcheck disable=SC2086
  pin 0 "$BIN/crm" up --listen 127.0.0.1:0 --data-dir "$WORK/data" --rate-limit-ip 0 --rate-limit-site 0 ${EXTRA:-} >"$WORK/$1.log" 2>&1 &
  PID=$!
  for _ in $(seq 1 600); do grep -q "listening on" "$WORK/$1.log" && break; sleep 0.05; done
  ADDR=$(grep -o "listening on http://[^ ]*" "$WORK/$1.log" | head -1 | sed 's#listening on http://##')
  [ -n "$ADDR" ] || { echo "crm up did not start:" >&2; cat "$WORK/$1.log" >&2; exit 1; }
}
metric() { curl -s "http://$ADDR/metrics" | awk -v name="$1" '$1 == name {print $2}'; }

start first
trap 'kill -TERM $PID 2>/dev/null || true' EXIT
pin 1 "$BIN/loadgen" --target "$ADDR" --mix batch --connections 32 --rate "$RATE" --duration-secs "$DURATION" \
  --warmup-secs 2 --site demo --pool 200000 --json >"$WORK/load.json" &
LOAD=$!
sleep "$((DURATION / 2 + 2))"
BEFORE=$(metric crm_processor_events_total)
kill -KILL "$PID"
wait "$PID" 2>/dev/null || true
wait "$LOAD" 2>/dev/null || true

STARTED=$(now_ms)
start second
until [ "$(curl -s -o /dev/null -w '%{http_code}' "http://$ADDR/readyz")" = 200 ]; do sleep 0.05; done
READY=$(now_ms)
# The lag gauge reads 0 until the first poll: done once it is 0 after something was processed
# again, or after 3 s with nothing to replay.
while true; do
  done_now=$(( $(metric crm_processor_events_total) + $(metric crm_processor_duplicates_total) ))
  if [ "$(metric crm_eventlog_consumer_lag)" = 0 ] && { [ "$done_now" -gt 0 ] || [ $(( $(now_ms) - READY )) -gt 3000 ]; }; then break; fi
  sleep 0.1
done
CAUGHT_UP=$(now_ms)
echo "stored before SIGKILL: $BEFORE; stored after recovery (this process): $(metric crm_processor_events_total); duplicates skipped: $(metric crm_processor_duplicates_total)"
echo "restart → /readyz 200: $((READY - STARTED)) ms; restart → consumer lag 0: $((CAUGHT_UP - STARTED)) ms"
