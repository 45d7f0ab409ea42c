#!/usr/bin/env bash
# End-to-end throughput of `crm up` by hand, for before/after comparisons of one change (the
# figures in ANALYSIS.md marked "bench/profile-up.sh"). `crm up` runs pinned to core 0 on a fresh
# data dir; the load generator sends 10-event batches at RATE requests/s (25 K events/s by
# default, more than one core processes) from core 1 for DURATION seconds. Prints the events the
# processor stored by the end of the load, the consumer lag left and the peak RSS.
#
# Usage: bench/profile-up.sh [--perf]      (release binaries from scripts/bench.sh or
#                                           `cargo build --release -p crm -p crm-bench --bins`)
#   CRM=path/to/crm      compare another build (e.g. a copy of the binary before a change)
#   EXTRA="--flag value" extra `crm up` flags, e.g. EXTRA="--processor-batch 30000"
#   SEED=path/to/data    start from a copy of this data dir instead of an empty one (e.g. a store
#                        with 1 M visitors: store_bench --embedded-dir, then seed_store; or the
#                        same with --redb-dir / --store redb to time the conversion at start)
#   --perf               also record a call-graph profile of 20 s into target/profile-up/perf.data
set -euo pipefail
cd "$(dirname "$0")/.."

RATE=${RATE:-2500}
DURATION=${DURATION:-40}
BIN=target/release
CRM=${CRM:-$BIN/crm}
WORK=target/profile-up
rm -rf "$WORK" && mkdir -p "$WORK"
if [ -n "${SEED:-}" ]; then cp -r "$SEED" "$WORK/data"; fi

# Only ever run in the background (`pin … &`), so exec makes $! the program itself.
pin() { if [ "$(nproc)" -ge 2 ] && command -v taskset >/dev/null; then exec taskset -c "$1" "${@:2}"; else exec "${@:2}"; fi; }

# shellcheck disable=SC2086
pin 0 "$CRM" up --listen 127.0.0.1:0 --data-dir "$WORK/data" --rate-limit-ip 0 --rate-limit-site 0 ${EXTRA:-} >"$WORK/up.log" 2>&1 &
PID=$!
trap 'kill -TERM $PID 2>/dev/null || true' EXIT
for _ in $(seq 1 150); do grep -q "listening on" "$WORK/up.log" && break; sleep 0.2; done
ADDR=$(grep -o "listening on http://[^ ]*" "$WORK/up.log" | head -1 | sed 's#listening on http://##')
[ -n "$ADDR" ] || { echo "crm up did not start:" >&2; cat "$WORK/up.log" >&2; exit 1; }

pin 1 "$BIN/loadgen" --target "$ADDR" --mix batch --connections 32 --rate "$RATE" --duration-secs "$DURATION" \
  --warmup-secs 2 --site demo --pool 200000 --json >"$WORK/load.json" &
LOAD=$!
if [ "${1:-}" = "--perf" ]; then
  sleep 10
  perf record -F 199 --call-graph dwarf,16384 -p "$PID" -o "$WORK/perf.data" -- sleep 20 >/dev/null 2>&1
fi
wait $LOAD
metric() { curl -s "http://$ADDR/metrics" | awk -v name="$1" '$1 == name {print $2}'; }
echo "offered: $RATE req/s x 10 events for ${DURATION} s (+2 s warm-up); load: $(tail -1 "$WORK/load.json" | head -c 200)"
echo "events stored by the end of the load: $(metric crm_processor_events_total)"
echo "consumer lag left: $(metric crm_eventlog_consumer_lag)"
grep VmHWM "/proc/$PID/status"
