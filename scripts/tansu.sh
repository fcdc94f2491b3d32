#!/usr/bin/env bash
# Installs (if missing) and starts a local Tansu broker on loopback for the broker tests.
#   scripts/tansu.sh install          install tansu 0.6.0 unless a working one is present
#   scripts/tansu.sh start [STORAGE]  start it; prints KAFKA_BOOTSTRAP_SERVERS=127.0.0.1:PORT
#                                     (STORAGE defaults to memory://tansu/)
#   scripts/tansu.sh stop             stop the broker this script started
set -euo pipefail

STATE_DIR="${KTM_TANSU_DIR:-${TMPDIR:-/tmp}/ktm-tansu}"
mkdir -p "$STATE_DIR"

tansu_works() {
  # A default install refuses memory:// (FeatureNotEnabled dynostore): try it for real.
  command -v tansu >/dev/null 2>&1 || return 1
  local port log pid ok=1
  port=$(free_port); log="$STATE_DIR/probe.log"
  tansu broker --listener-url "tcp://127.0.0.1:$port" --advertised-listener-url "tcp://127.0.0.1:$port" \
    --storage-engine memory://tansu/ >"$log" 2>&1 &
  pid=$!
  for _ in $(seq 1 100); do
    if grep -q "ready in" "$log"; then ok=0; break; fi
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  kill "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
  return $ok
}

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'
}

case "${1:-}" in
  install)
    if tansu_works; then
      echo "tansu: $(command -v tansu) starts with memory:// storage; not reinstalling" >&2
    else
      echo "tansu: installing 0.6.0 with dynostore,libsql (about 14 minutes on 2 cores)" >&2
      cargo install tansu --locked --version 0.6.0 --features dynostore,libsql
      tansu_works || { echo "tansu: installed but does not start with memory://" >&2; exit 1; }
    fi
    ;;
  start)
    storage="${2:-memory://tansu/}"
    port=$(free_port)
    log="$STATE_DIR/broker-$port.log"
    tansu broker --listener-url "tcp://127.0.0.1:$port" --advertised-listener-url "tcp://127.0.0.1:$port" \
      --storage-engine "$storage" >"$log" 2>&1 &
    echo $! >>"$STATE_DIR/pids"
    for _ in $(seq 1 200); do
      grep -q "ready in" "$log" && { echo "KAFKA_BOOTSTRAP_SERVERS=127.0.0.1:$port"; exit 0; }
      sleep 0.1
    done
    echo "tansu: not ready after 20 s; log follows" >&2; cat "$log" >&2; exit 1
    ;;
  stop)
    if [ -f "$STATE_DIR/pids" ]; then
      while read -r pid; do kill "$pid" 2>/dev/null || true; done <"$STATE_DIR/pids"
      rm -f "$STATE_DIR/pids"
    fi
    ;;
  *) echo "usage: $0 install | start [STORAGE] | stop" >&2; exit 2 ;;
esac
