#!/usr/bin/env bash
# Real-browser end-to-end tests of the website widgets (tracking.js, forms-embed.js) against a
# real crm server. Usage:
#   widgets/test/run.sh                      # every *.test.mjs
#   widgets/test/run.sh tracking.test.mjs    # some of them
# Environment: CRM_BIN (default <repo>/target/debug/crm), CHROMIUM_BIN (default /usr/bin/chromium),
# WIDGETS_FROM=binary|dist|source (where pages get the widget scripts; default: the crm server).
# DASHBOARD_FROM=binary|dist (where the dashboard test gets the dashboard; default: the crm server).
# Screenshots: <repo>/target/widget-screenshots/. Prerequisites missing = failure, never a skip.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
export CRM_BIN="${CRM_BIN:-$repo/target/debug/crm}"
export CHROMIUM_BIN="${CHROMIUM_BIN:-/usr/bin/chromium}"

fail() {
  echo "widgets/test/run.sh: $*" >&2
  exit 1
}

command -v node >/dev/null || fail "node is not installed (Node 20 or newer is needed)"
command -v npm >/dev/null || fail "npm is not installed"
[ -x "$CHROMIUM_BIN" ] || fail "no Chromium at $CHROMIUM_BIN (apt-get install chromium, or set CHROMIUM_BIN)"
[ -x "$CRM_BIN" ] || fail "no crm binary at $CRM_BIN (cargo build -p crm, or set CRM_BIN)"
# Absolute, so the tests find it from any directory.
CRM_BIN="$(cd "$(dirname "$CRM_BIN")" && pwd)/$(basename "$CRM_BIN")"

cd "$here"
# (Re)install playwright-core when node_modules is missing or older than package-lock.json.
lock_sum="$(sha256sum package-lock.json | cut -d' ' -f1)"
if [ "$(cat node_modules/.lock-sha256 2>/dev/null || true)" != "$lock_sum" ]; then
  npm ci --no-audit --no-fund --loglevel=error >/dev/null || fail "npm ci failed in $here"
  echo "$lock_sum" > node_modules/.lock-sha256
fi

if [ "$#" -eq 0 ]; then
  set -- *.test.mjs
fi
exec node --test --test-concurrency=1 "$@"
