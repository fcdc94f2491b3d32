#!/usr/bin/env bash
# The project's test command (README "Testing"; CI calls it). Provides a real broker
# unless KAFKA_BOOTSTRAP_SERVERS already names one, then runs every test of every crate
# with every feature.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ -z "${KAFKA_BOOTSTRAP_SERVERS:-}" ]; then
  scripts/tansu.sh install
  trap 'scripts/tansu.sh stop' EXIT
  export "$(scripts/tansu.sh start | tail -n 1)"
  echo "test.sh: broker tests use Tansu at $KAFKA_BOOTSTRAP_SERVERS" >&2
fi

cargo test --workspace --all-features "$@"
