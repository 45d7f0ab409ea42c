# Helpers sourced by scripts/clickhouse.sh and scripts/kafka.sh.

# Installs pip package $2 into the venv $1 unless the check command $3 already succeeds.
ensure_venv_package() {
  local venv="$1" package="$2" check="$3"
  if ! eval "$check" >/dev/null 2>&1; then
    echo "installing $package into $venv" >&2
    mkdir -p "$(dirname "$venv")"
    python3 -m venv "$venv"
    "$venv/bin/pip" install -q --no-deps "$package" >&2
  fi
}

# Prints a free TCP port on 127.0.0.1.
free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
}

# Stops the process in pid file $1 (TERM, up to 5 s, then KILL) and removes the pid file and
# any further files given.
stop_pidfile() {
  local pidfile="$1"
  shift
  [ -f "$pidfile" ] || return 0
  local pid
  pid="$(cat "$pidfile")"
  kill "$pid" 2>/dev/null || true
  for _ in $(seq 1 20); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.25
  done
  kill -9 "$pid" 2>/dev/null || true
  rm -f "$pidfile" "$@"
}
