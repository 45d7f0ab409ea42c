#!/usr/bin/env bash
# Measures the README's run command as a newcomer meets it: a fresh clone of HEAD, an empty
# target directory, and no cmake (a `cmake` that fails is put first on PATH, so any build script
# that wants it breaks the build). Times `cargo build --release --locked -p crm` (crates are
# fetched first, untimed: the download depends on the network, not the project), then starts the
# binary on embedded storage and checks that `/readyz` answers 200. Writes the figures into
# bench/RESULTS.md between <!-- section:build --> markers (other sections are untouched).
#
# Usage: scripts/build-time.sh            measure and write bench/RESULTS.md
#        scripts/build-time.sh --no-write measure and print only
set -euo pipefail
cd "$(dirname "$0")/.."
root="$PWD"

write=1
case "${1:-}" in
  '') ;;
  --no-write) write=0 ;;
  *) echo "build-time.sh: unknown argument '$1'" >&2; exit 2 ;;
esac

work="$(mktemp -d)"
server_pid=""
cleanup() {
  [ -n "$server_pid" ] && kill "$server_pid" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

commit="$(git rev-parse --short HEAD)"
git clone --quiet --no-hardlinks "$root" "$work/crm"
mkdir -p "$work/bin"
printf '#!/bin/sh\necho "cmake is not installed on this machine (hidden by scripts/build-time.sh)" >&2\nexit 127\n' > "$work/bin/cmake"
chmod +x "$work/bin/cmake"

cd "$work/crm"
cargo fetch --locked --quiet
export CARGO_TARGET_DIR="$work/target"
start=$(date +%s)
PATH="$work/bin:$PATH" cargo build --release --locked -p crm
seconds=$(( $(date +%s) - start ))
size=$(du -k "$CARGO_TARGET_DIR/release/crm" | cut -f1)

# The binary starts on embedded storage and says it is ready.
"$CARGO_TARGET_DIR/release/crm" up --listen 127.0.0.1:0 --data-dir "$work/data" > "$work/up.log" 2>&1 &
server_pid=$!
address=""
for _ in $(seq 1 100); do
  address="$(sed -n 's/.*listening on http:\/\/\([0-9.:]*\).*/\1/p' "$work/up.log" | head -n1)"
  [ -n "$address" ] && break
  sleep 0.1
done
[ -n "$address" ] || { cat "$work/up.log" >&2; echo "crm up did not start" >&2; exit 1; }
ready=""
for _ in $(seq 1 100); do
  ready="$(curl -s -o /dev/null -w '%{http_code}' "http://$address/readyz" || true)"
  [ "$ready" = 200 ] && break
  sleep 0.1
done
[ "$ready" = 200 ] || { echo "/readyz answered $ready" >&2; exit 1; }

cores=$(nproc)
minutes=$(awk -v s="$seconds" 'BEGIN { printf "%.1f", s / 60 }')
block="<!-- section:build -->
## Build: the README's run command from cold

- Command: \`scripts/build-time.sh\` (fresh clone of \`$commit\`, empty target directory, cmake hidden; crates fetched beforehand, untimed)
- Machine: $cores cores, $(date -u '+%Y-%m-%d %H:%M UTC')

| what | figure |
| --- | ---: |
| \`cargo build --release --locked -p crm\` (default features: embedded log and store, no Kafka) | $seconds s ($minutes min) |
| binary size | $((size / 1024)) MiB |
| \`crm up\` started and \`/readyz\` answered | $ready |
<!-- /section:build -->"
echo "$block"
if [ "$write" = 1 ]; then
  python3 - "$root/bench/RESULTS.md" "$block" <<'EOF'
import re, sys
path, block = sys.argv[1], sys.argv[2]
text = open(path).read()
pattern = re.compile(r"<!-- section:build -->.*?<!-- /section:build -->", re.S)
text = pattern.sub(lambda _: block, text) if pattern.search(text) else text.rstrip("\n") + "\n\n" + block + "\n"
open(path, "w").write(text)
EOF
  echo "wrote bench/RESULTS.md (section build)"
fi
