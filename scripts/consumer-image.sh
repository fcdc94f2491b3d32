#!/usr/bin/env bash
# Builds the local docker image of the scale-out test's consumer, with
# scripts/scratch-image.sh: the test binary of tests/scale_out.rs itself, which the test
# runs in the container with `--exact scale_out_consumer --ignored ...` (the docker run
# arguments) and its settings in KTM_SCALE_OUT_CHILD. The tag is the binary's content
# hash, so a rebuilt binary gets a new image and an unchanged one is reused; older tags
# of it are removed. Prints the image name.
#   scripts/consumer-image.sh PATH/TO/TEST-BINARY
set -euo pipefail
bin="${1:?usage: $0 PATH/TO/TEST-BINARY}"
[ -x "$bin" ] || { echo "consumer-image: $bin is not an executable" >&2; exit 1; }
repo="ktm-scale-out-consumer"
tag="$repo:$(sha256sum "$bin" | cut -c1-16)"
# Each distinct binary would otherwise leave a ~100 MB image behind.
docker images --format '{{.Repository}}:{{.Tag}}' "$repo" | grep -vx "$tag" \
  | xargs -r docker rmi -f >/dev/null 2>&1 || true
exec "$(dirname "$0")/scratch-image.sh" "$bin" "$tag"
