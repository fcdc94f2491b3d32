#!/usr/bin/env bash
# Builds the local docker image ktm-tansu:0.6.0 (no registry needed) of the installed
# tansu binary, with scripts/scratch-image.sh. Prints the image name.
set -euo pipefail
exec "$(dirname "$0")/scratch-image.sh" "$(command -v tansu)" "${KTM_TANSU_IMAGE:-ktm-tansu:0.6.0}" broker
