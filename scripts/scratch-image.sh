#!/usr/bin/env bash
# Builds a local docker image (no registry needed) FROM scratch holding one binary and the
# shared libraries ldd lists for it, at the paths the loader looks for them.
#   scripts/scratch-image.sh BINARY TAG [ARG...]
# The image runs `/BINARY-NAME ARG...`. Reuses an existing image of that tag. Prints the tag.
set -euo pipefail
bin="${1:?usage: $0 BINARY TAG [ENTRYPOINT-ARG...]}"
tag="${2:?usage: $0 BINARY TAG [ENTRYPOINT-ARG...]}"
shift 2
[ -x "$bin" ] || { echo "scratch-image: $bin is not an executable" >&2; exit 1; }
if docker image inspect "$tag" >/dev/null 2>&1; then echo "$tag"; exit 0; fi
name="$(basename "$bin")"
ctx="$(mktemp -d)"
trap 'rm -rf "$ctx"' EXIT
cp "$bin" "$ctx/$name"
mkdir -p "$ctx/root/tmp"
ldd "$bin" | awk '/=> \// {print $3} /^\t\// {print $1}' | while read -r lib; do
  mkdir -p "$ctx/root$(dirname "$lib")"
  cp -L "$lib" "$ctx/root$lib"
done
entrypoint="\"/$name\""
for arg in "$@"; do entrypoint="$entrypoint, \"$arg\""; done
cat >"$ctx/Dockerfile" <<DOCKERFILE
FROM scratch
COPY root/ /
COPY $name /$name
ENTRYPOINT [$entrypoint]
DOCKERFILE
docker build -q -t "$tag" "$ctx" >/dev/null
echo "$tag"
