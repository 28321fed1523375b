#!/usr/bin/env bash
# The plant image from a local wheelhouse: `pip wheel` the project (and its pinned dependencies) into a build
# context, then `docker build` with no network access needed. Usage:
#   build-image.sh [TAG] [BASE_IMAGE]     (defaults: aiotlab-plant:latest, the Dockerfile's default base)
set -euo pipefail
here="$(cd "$(dirname "$0")/../.." && pwd)"
tag="${1:-aiotlab-plant:latest}"
base="${2:-}"
python="${PYTHON:-$here/.venv/bin/python}"
[ -x "$python" ] || python=python3
ctx="$here/build/docker-context"
rm -rf "$ctx" && mkdir -p "$ctx/wheels"
"$python" -m pip wheel --quiet --wheel-dir "$ctx/wheels" "$here"
cp "$here/infra/Dockerfile" "$ctx/Dockerfile"
args=()
# A local base builds with no network at all; the default base may need Debian for Mosquitto and Prometheus.
[ -n "$base" ] && args+=(--build-arg "BASE_IMAGE=$base" --network none)
docker build -q -t "$tag" "${args[@]}" "$ctx"
echo "built $tag"
