#!/usr/bin/env bash
# The scale-out deployment of deploy/compose.yaml, run without containers (no container engine
# runs on this project's machines): the same processes with the same environment, each in its
# own data directory as in its own container, then an end-to-end check against them.
#
#   ClickHouse (scripts/clickhouse.sh) and a Kafka-protocol broker (tansu, scripts/kafka.sh)
#   crm api                        (migrates the ClickHouse schema, creates admin and `demo`)
#   crm ingest × 2                 (the collector fleet)
#   crm process × 2                (the processor fleet, one consumer group)
#
# The check: every process ready; 300 events for 30 visitors sent alternately to both collectors
# (each answered 202); every visitor readable through the API with all 10 of its events; the
# processors' counters add up to exactly 300 stored (nothing lost, nothing twice); an alert-rule
# webhook secret stored sealed in ClickHouse (the fleet shares CRM_SECRETS_KEY); every process
# stops cleanly on SIGTERM.
#
# Usage: scripts/fleet.sh            build crm with --features kafka if needed, run, stop everything
#   CRM=path/to/crm                  use this binary (built with --features kafka)
#   FLEET_CLICKHOUSE_URL=… FLEET_KAFKA_BROKERS=…   use running servers instead of starting them
#   FLEET_DIR=dir                    where the data directories and logs go (target/fleet)
set -euo pipefail
cd "$(dirname "$0")/.."

DIR=${FLEET_DIR:-target/fleet}
rm -rf "$DIR" && mkdir -p "$DIR"
DIR=$(cd "$DIR" && pwd)
say() { printf '\n==> %s\n' "$*"; }
fail() {
  echo "fleet: FAILED: $*" >&2
  for log in "$DIR"/*.log; do
    [ -f "$log" ] || continue
    echo "--- last lines of $log" >&2
    tail -n 15 "$log" >&2
  done
  exit 1
}

if [ -z "${CRM:-}" ]; then
  say "building crm with the kafka feature"
  cargo build -p crm --features kafka --locked
  CRM=target/debug/crm
fi
CRM=$(cd "$(dirname "$CRM")" && pwd)/$(basename "$CRM")

pids=()
started_servers=()
cleanup() {
  for pid in "${pids[@]}"; do kill -KILL "$pid" 2>/dev/null || true; done
  for server in "${started_servers[@]}"; do
    case "$server" in
      clickhouse) scripts/clickhouse.sh stop "$DIR/clickhouse" >/dev/null 2>&1 || true ;;
      kafka) scripts/kafka.sh stop "$DIR/kafka" >/dev/null 2>&1 || true ;;
    esac
  done
}
trap cleanup EXIT

if [ -n "${FLEET_CLICKHOUSE_URL:-}" ]; then
  clickhouse_url=$FLEET_CLICKHOUSE_URL
else
  say "starting ClickHouse"
  started_servers+=(clickhouse)
  clickhouse_url=$(scripts/clickhouse.sh start "$DIR/clickhouse")
fi
if [ -n "${FLEET_KAFKA_BROKERS:-}" ]; then
  brokers=$FLEET_KAFKA_BROKERS
else
  say "starting the Kafka broker (tansu)"
  started_servers+=(kafka)
  brokers=$(scripts/kafka.sh start "$DIR/kafka")
fi

# deploy/compose.yaml's x-crm-env, pointed at these servers; names unique per run so a reused
# ClickHouse or broker holds nothing of an earlier run.
run_id="fleet_$(date +%s)_$$"
export CRM_EVENT_LOG=kafka
export CRM_KAFKA_BROKERS=$brokers
export CRM_KAFKA_TOPIC_PREFIX=$run_id
export CRM_KAFKA_PARTITIONS=6
export CRM_KAFKA_REPLICATION=1
export CRM_STORE=clickhouse
export CRM_CLICKHOUSE_URL=$clickhouse_url
export CRM_CLICKHOUSE_DATABASE=$run_id
export CRM_RETENTION_DAYS=395
export CRM_LOG_FORMAT=json
export RUST_LOG=info
CRM_SECRETS_KEY=$(python3 -c 'import base64, os; print(base64.b64encode(os.urandom(32)).decode())')
export CRM_SECRETS_KEY
export CRM_ADMIN_PASSWORD=fleet-admin-password
export CRM_RATE_LIMIT_IP=0

# Starts `crm <args>` with its own data directory; sets $addr to the address it listens on.
start() {
  local name=$1
  shift
  mkdir -p "$DIR/$name"
  "$CRM" "$@" --listen 127.0.0.1:0 --data-dir "$DIR/$name" >"$DIR/$name.log" 2>&1 &
  pids+=($!)
  addr=""
  for _ in $(seq 1 300); do
    addr=$(grep -o 'listening on http://[^ ]*' "$DIR/$name.log" 2>/dev/null | head -1 | sed 's#listening on http://##') || true
    [ -n "$addr" ] && break
    kill -0 "${pids[-1]}" 2>/dev/null || fail "crm $1 ($name) exited at start"
    sleep 0.2
  done
  [ -n "$addr" ] || fail "crm $1 ($name) did not start listening"
  echo "$name: crm $* on $addr"
}

say "starting the fleet"
start api api && api=$addr
start collector-1 ingest && collector1=$addr
start collector-2 ingest && collector2=$addr
start processor-1 process && processor1=$addr
start processor-2 process && processor2=$addr

say "checking readiness"
for target in "$api" "$collector1" "$collector2" "$processor1" "$processor2"; do
  ready=""
  for _ in $(seq 1 300); do
    if [ "$(curl -s -o /dev/null -w '%{http_code}' "http://$target/readyz")" = 200 ]; then ready=1; break; fi
    sleep 0.2
  done
  [ -n "$ready" ] || fail "$target never became ready"
done

json() { python3 -c "import json, sys; d = json.load(sys.stdin); print($1)"; }
token=$(curl -sf "http://$api/api/v1/auth/login" -H 'content-type: application/json' \
  -d "{\"username\":\"admin\",\"password\":\"$CRM_ADMIN_PASSWORD\"}" | json 'd["data"]["access_token"]') || fail "admin login"

say "sending 300 events for 30 visitors through both collectors"
now_ms=$(($(date +%s) * 1000))
for v in $(seq 0 29); do
  events=$(python3 - "$v" "$now_ms" <<'PY'
import json, sys
v, now = int(sys.argv[1]), int(sys.argv[2])
events = [{"v": 1, "type": "pageview", "site_id": "demo", "visitor_id": f"fleet-{v}", "ts": now - 60_000 + i * 1000,
           "url": f"https://fleet.example/page-{i}"} for i in range(10)]
print(json.dumps({"events": events}))
PY
)
  target=$collector1
  [ $((v % 2)) -eq 1 ] && target=$collector2
  status=$(curl -s -o /dev/null -w '%{http_code}' "http://$target/v1/events" -H 'content-type: text/plain' \
    -H 'user-agent: Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36' -d "$events")
  [ "$status" = 202 ] || fail "collector $target answered $status for visitor $v"
done

say "waiting until every visitor is readable with all its events"
for v in $(seq 0 29); do
  seen=""
  for _ in $(seq 1 300); do
    count=$(curl -s "http://$api/api/v1/visitors/fleet-$v?site=demo" -H "authorization: Bearer $token" | json 'd.get("data", {}).get("events", 0)' 2>/dev/null || echo 0)
    if [ "$count" = 10 ]; then seen=1; break; fi
    sleep 0.2
  done
  [ -n "$seen" ] || fail "visitor fleet-$v has $count of its 10 events"
done

stored=0
for target in "$processor1" "$processor2"; do
  n=$(curl -s "http://$target/metrics" | awk '$1 == "crm_processor_events_total" {print $2}')
  echo "processor $target stored ${n:-0}"
  stored=$((stored + ${n:-0}))
done
[ "$stored" = 300 ] || fail "the processors stored $stored events, not 300"

say "an alert rule's webhook secret is stored sealed"
secret=$(curl -sf "http://$api/api/v1/alert-rules" -H "authorization: Bearer $token" -H 'content-type: application/json' \
  -d '{"site_id":"demo","rule_id":"fleet","name":"Fleet","webhook_url":"https://hooks.example/fleet","condition":{"type":"score_crossed","threshold":90}}' \
  | json 'd["data"]["secret"]') || fail "creating an alert rule"
stored_rules=$(curl -s "$clickhouse_url/?database=$run_id" --data-binary "SELECT body FROM alert_rules FORMAT TSVRaw" || true)
[ -n "$stored_rules" ] || fail "no alert rule in ClickHouse"
case "$stored_rules" in
  *"$secret"*) fail "the webhook secret is in ClickHouse in plaintext" ;;
  *crm-sealed:v1:*) echo "sealed in ClickHouse" ;;
  *) fail "the stored rule holds no sealed secret: $stored_rules" ;;
esac

say "stopping the fleet (SIGTERM)"
for pid in "${pids[@]}"; do kill -TERM "$pid"; done
for pid in "${pids[@]}"; do
  for _ in $(seq 1 300); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  kill -0 "$pid" 2>/dev/null && fail "process $pid did not stop within 30 s of SIGTERM"
  wait "$pid" || fail "process $pid exited with status $?"
done
pids=()
echo
echo "fleet: ok (5 processes, 300 events stored exactly once, secrets sealed, clean stop)"
