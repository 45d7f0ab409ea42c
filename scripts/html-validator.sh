#!/usr/bin/env bash
# Installs html5lib (the HTML5 parsing algorithm in Python, used in strict mode as a validator of
# the help centre's markup) into a cached venv and prints the path of that venv's python.
# The help-centre tests run it through $CRM_TEST_HTML_VALIDATOR.
set -euo pipefail
cd "$(dirname "$0")/.."
venv="${CRM_TOOLS_DIR:-$HOME/.cache/crm-tools}/html5lib-venv"
if ! "$venv/bin/python" -c 'import html5lib' >/dev/null 2>&1; then
  echo "installing html5lib into $venv" >&2
  mkdir -p "$(dirname "$venv")"
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q --no-deps html5lib==1.1 six==1.17.0 webencodings==0.5.1 >&2
fi
echo "$venv/bin/python"
