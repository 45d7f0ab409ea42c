#!/usr/bin/env bash
# Builds the website widgets with a pinned terser and checks their size budgets
# (bytes after `gzip -9` of the minified file):
#
#   widgets/tracking.js     → widgets/dist/tracking.min.js     ≤ 2048
#   widgets/forms-embed.js  → widgets/dist/forms-embed.min.js  ≤ 4096
#   widgets/chat-widget.js  → widgets/dist/chat-widget.min.js  ≤ 8192
#
# Usage:
#   widgets/build.sh           build into widgets/dist/ and print the sizes. Exits 1 if a
#                              file is over its budget (the files are still written, so
#                              they can be inspected).
#   widgets/build.sh --check   for CI: build into a temporary directory and touch nothing.
#                              Exits 1 if a committed widgets/dist/*.min.js differs from the
#                              fresh build (or is missing, or has no source), or if a file is
#                              over its budget.
#
# Needs node/npx. terser runs from a temporary directory, so nothing (node_modules,
# package-lock.json) lands in the repository; npx caches the package in ~/.npm. The
# output depends only on the terser version (its parser, compressor and printer are
# its own code), so pinning it makes the build reproducible.
set -euo pipefail

TERSER=terser@5.36.0
# name:budget. Each widgets/NAME.js is built to widgets/dist/NAME.min.js.
WIDGETS=(tracking:2048 forms-embed:4096 chat-widget:8192)

usage() { sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//'; }

check=0
case "${1:-}" in
  '') ;;
  --check) check=1 ;;
  -h|--help) usage; exit 0 ;;
  *) echo "build.sh: unknown argument '$1' (see widgets/build.sh --help)" >&2; exit 2 ;;
esac

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
mkdir -p "$tmp/dist"

failed=0
fail() { echo "error: $*" >&2; failed=1; }

for widget in "${WIDGETS[@]}"; do
  name="${widget%%:*}" budget="${widget##*:}"
  out="$tmp/dist/$name.min.js" dist="$here/dist/$name.min.js"

  # -c -m: compress and mangle local names only. Properties are never mangled: they are
  # the wire format or DOM APIs. wrap_func_args=false drops the parentheses terser
  # otherwise puts around function arguments (a parse hint, not needed here).
  # ascii_only: non-ASCII characters in strings are written as \u escapes, so the file
  # works whatever charset the host page or a CDN applies to it.
  (cd "$tmp" && npx --yes "$TERSER" "$here/$name.js" \
    --compress --mangle --format wrap_func_args=false,ascii_only=true --output "$out")

  raw=$(wc -c < "$out")
  gz=$(gzip -9 < "$out" | wc -c)
  echo "widgets/dist/$name.min.js: $raw bytes, $gz bytes gzipped (budget $budget)"
  if [ "$gz" -gt "$budget" ]; then
    fail "widgets/dist/$name.min.js is over its size budget by $((gz - budget)) bytes ($gz > $budget gzipped)"
  fi

  if [ "$check" = 1 ]; then
    if [ ! -f "$dist" ]; then
      fail "widgets/dist/$name.min.js is missing: run widgets/build.sh and commit the result"
    elif ! cmp -s "$out" "$dist"; then
      fail "widgets/dist/$name.min.js is out of date (differs from a fresh build of widgets/$name.js): run widgets/build.sh and commit the result"
    fi
  else
    mkdir -p "$here/dist"
    cp "$out" "$dist"
  fi
done

if [ "$check" = 1 ]; then
  # Build outputs whose source is gone.
  for file in "$here"/dist/*.min.js; do
    [ -e "$file" ] || continue
    [ -e "$tmp/dist/$(basename "$file")" ] || fail "widgets/dist/$(basename "$file") has no source in widgets/ (stale build output?)"
  done
  [ "$failed" = 0 ] && echo "ok: widgets/dist/ is up to date and within budget"
fi

exit "$failed"
