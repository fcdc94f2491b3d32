#!/usr/bin/env bash
# Builds a local docker image (no registry needed) of the scale-out test's consumer
# binary: FROM scratch, the binary and the shared libraries ldd lists for it, like
# scripts/tansu-image.sh. The tag is the binary's content hash, so a rebuilt binary gets
# a new image and an unchanged one is reused. Prints the image name.
#   scripts/consumer-image.sh PATH/TO/ktm-scale-out-consumer
set -euo pipefail
bin="${1:?usage: $0 PATH/TO/ktm-scale-out-consumer}"
[ -x "$bin" ] || { echo "consumer-image: $bin is not an executable" >&2; exit 1; }
IMAGE="ktm-scale-out-consumer:$(sha256sum "$bin" | cut -c1-16)"
if docker image inspect "$IMAGE" >/dev/null 2>&1; then echo "$IMAGE"; exit 0; fi
ctx="$(mktemp -d)"
trap 'rm -rf "$ctx"' EXIT
cp "$bin" "$ctx/consumer"
mkdir -p "$ctx/root/tmp"
# Every library the dynamic loader will look for, at the path it looks for it.
ldd "$bin" | awk '/=> \// {print $3} /^\t\// {print $1}' | while read -r lib; do
  mkdir -p "$ctx/root$(dirname "$lib")"
  cp -L "$lib" "$ctx/root$lib"
done
cat >"$ctx/Dockerfile" <<'DOCKERFILE'
FROM scratch
COPY root/ /
COPY consumer /consumer
ENTRYPOINT ["/consumer"]
DOCKERFILE
docker build -q -t "$IMAGE" "$ctx" >/dev/null
echo "$IMAGE"
