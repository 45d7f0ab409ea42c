#!/usr/bin/env bash
# Builds widgets/dist/tracking.min.js from widgets/tracking.js with a pinned terser and
# checks the size budget: at most 2048 bytes after `gzip -9`. Exits 1 when over budget
# (the minified file is still written, so it can be inspected).
#
#   widgets/build.sh
#
# Needs node/npx. terser runs from a temporary directory, so nothing (node_modules,
# package-lock.json) lands in the repository; npx caches the package in ~/.npm.
set -euo pipefail

BUDGET=2048
TERSER=terser@5.36.0

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT

# -c -m: compress and mangle local names only. Properties are never mangled: most of
# them are the wire format or DOM APIs. wrap_func_args=false drops the parentheses
# terser otherwise puts around function arguments (a parse hint, not needed here).
(cd "$tmp" && npx --yes "$TERSER" "$here/tracking.js" \
  --compress --mangle --format wrap_func_args=false --output "$tmp/tracking.min.js")

mkdir -p "$here/dist"
cp "$tmp/tracking.min.js" "$here/dist/tracking.min.js"

raw=$(wc -c < "$here/dist/tracking.min.js")
gz=$(gzip -9 < "$here/dist/tracking.min.js" | wc -c)
echo "widgets/dist/tracking.min.js: $raw bytes, $gz bytes gzipped (budget $BUDGET)"
if [ "$gz" -gt "$BUDGET" ]; then
  echo "over the size budget by $((gz - BUDGET)) bytes" >&2
  exit 1
fi
