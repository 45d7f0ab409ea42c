#!/usr/bin/env bash
# Builds the growth dashboard (a single-page app the API process serves at /) with a pinned
# esbuild:
#
#   widgets/dashboard/src/app.js  (+ the modules it imports) → widgets/dashboard/dist/app.js
#   widgets/dashboard/src/app.css (+ the files it @imports)   → widgets/dashboard/dist/app.css
#   widgets/dashboard/src/index.html                          → widgets/dashboard/dist/index.html
#
# index.html loads /app/app.js and /app/app.css; the crm binary embeds these three files.
#
# Usage:
#   widgets/dashboard/build.sh           build into widgets/dashboard/dist/ and print the sizes.
#   widgets/dashboard/build.sh --check   for CI: build into a temporary directory and touch
#                                        nothing. Exits 1 if the committed dist/ differs from the
#                                        fresh build (a file changed, is missing or is extra).
#
# Needs node/npx. esbuild runs from a temporary directory, so nothing (node_modules,
# package-lock.json) lands in the repository; npx caches the package in ~/.npm. esbuild's output
# depends only on its version and the sources (no timestamps, no absolute paths once minified),
# so pinning it makes the build reproducible.
set -euo pipefail

ESBUILD=esbuild@0.24.0

usage() { sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//'; }

check=0
case "${1:-}" in
  '') ;;
  --check) check=1 ;;
  -h|--help) usage; exit 0 ;;
  *) echo "build.sh: unknown argument '$1' (see widgets/dashboard/build.sh --help)" >&2; exit 2 ;;
esac

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
out="$tmp/dist"
mkdir -p "$out"

# --bundle: one file per entry point. --minify: whitespace, syntax and local names (properties
# stay: they are the API's JSON and DOM APIs). --charset=ascii: non-ASCII characters become
# escapes, so the files work whatever charset they are served with. --target=es2020: what
# current browsers run. --legal-comments=none: no license comments are kept (all code is ours).
(cd "$tmp" && npx --yes "$ESBUILD" \
  "$here/src/app.js" "$here/src/app.css" \
  --bundle --minify --format=iife --target=es2020 --charset=ascii --legal-comments=none \
  --log-level=warning --outdir="$out")
cp "$here/src/index.html" "$out/index.html"

for file in index.html app.js app.css; do
  [ -s "$out/$file" ] || { echo "error: the build produced no $file" >&2; exit 1; }
  raw=$(wc -c < "$out/$file")
  gz=$(gzip -9 < "$out/$file" | wc -c)
  echo "widgets/dashboard/dist/$file: $raw bytes, $gz bytes gzipped"
done

if [ "$check" = 1 ]; then
  failed=0
  for file in index.html app.js app.css; do
    if [ ! -f "$here/dist/$file" ]; then
      echo "error: widgets/dashboard/dist/$file is missing: run widgets/dashboard/build.sh and commit the result" >&2
      failed=1
    elif ! cmp -s "$out/$file" "$here/dist/$file"; then
      echo "error: widgets/dashboard/dist/$file is out of date (differs from a fresh build of widgets/dashboard/src/): run widgets/dashboard/build.sh and commit the result" >&2
      failed=1
    fi
  done
  for file in "$here"/dist/*; do
    [ -e "$file" ] || continue
    [ -e "$out/$(basename "$file")" ] || { echo "error: widgets/dashboard/dist/$(basename "$file") is not a build output (stale file?)" >&2; failed=1; }
  done
  [ "$failed" = 0 ] && echo "ok: widgets/dashboard/dist/ is up to date"
  exit "$failed"
fi

rm -rf "$here/dist"
mkdir -p "$here/dist"
cp "$out/index.html" "$out/app.js" "$out/app.css" "$here/dist/"
