#!/usr/bin/env bash
# Builds the local docker image ktm-tansu:0.6.0 (no registry needed): FROM scratch, the
# installed tansu binary and the shared libraries ldd lists for it. Prints the image name.
set -euo pipefail
IMAGE="${KTM_TANSU_IMAGE:-ktm-tansu:0.6.0}"
if docker image inspect "$IMAGE" >/dev/null 2>&1; then echo "$IMAGE"; exit 0; fi
bin="$(command -v tansu)"
ctx="$(mktemp -d)"
trap 'rm -rf "$ctx"' EXIT
cp "$bin" "$ctx/tansu"
mkdir -p "$ctx/root"
# Every library the dynamic loader will look for, at the path it looks for it.
ldd "$bin" | awk '/=> \// {print $3} /^\t\// {print $1}' | while read -r lib; do
  mkdir -p "$ctx/root$(dirname "$lib")"
  cp -L "$lib" "$ctx/root$lib"
done
mkdir -p "$ctx/root/tmp"
cat >"$ctx/Dockerfile" <<'DOCKERFILE'
FROM scratch
COPY root/ /
COPY tansu /tansu
ENTRYPOINT ["/tansu", "broker"]
DOCKERFILE
docker build -q -t "$IMAGE" "$ctx" >/dev/null
echo "$IMAGE"
