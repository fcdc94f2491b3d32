#!/usr/bin/env bash
# The project's test command (README "Testing"; CI calls it). Provides a real broker
# unless KAFKA_BOOTSTRAP_SERVERS already names one, then runs every test of every crate
# with every feature.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ -z "${KAFKA_BOOTSTRAP_SERVERS:-}" ] || [ -z "${KTM_KAFKA_IMAGE:-}" ]; then
  scripts/tansu.sh install
fi
# Container tests (pause, network cut, restart) start their own broker through
# testcontainers; no registry is reachable here, so build a local Tansu image for them.
if [ -z "${KTM_KAFKA_IMAGE:-}" ] && docker version >/dev/null 2>&1; then
  KTM_KAFKA_IMAGE="$(scripts/tansu-image.sh)"
  export KTM_KAFKA_IMAGE
  echo "test.sh: container tests use the image $KTM_KAFKA_IMAGE" >&2
fi
if [ -z "${KAFKA_BOOTSTRAP_SERVERS:-}" ]; then
  trap 'scripts/tansu.sh stop' EXIT
  export "$(scripts/tansu.sh start | tail -n 1)"
  # Tests skip the few checks Tansu's known group defects make impossible (and say so).
  export KTM_BROKER=tansu
  echo "test.sh: broker tests use Tansu at $KAFKA_BOOTSTRAP_SERVERS" >&2
fi

cargo test --workspace --all-features "$@"
