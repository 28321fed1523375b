#!/usr/bin/env bash
# A local base image with no registry: Debian bookworm by debootstrap (Python 3.11, venv, Mosquitto, Prometheus)
# imported into the Docker engine. Usage: build-base-image.sh [TAG] (default aiotlab-base:bookworm).
# EXTRA_PACKAGES (comma-separated) adds Debian packages (the workstation's base: its tools).
set -euo pipefail
tag="${1:-aiotlab-base:bookworm}"
mirror="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"
if docker image inspect "$tag" >/dev/null 2>&1; then
  echo "base image $tag exists"; exit 0
fi
command -v debootstrap >/dev/null || { echo "debootstrap is not installed (apt-get install debootstrap)" >&2; exit 2; }
root="$(mktemp -d /tmp/aiotlab-rootfs.XXXXXX)"
trap 'rm -rf "$root"' EXIT
include="python3,python3-venv,mosquitto,prometheus,ca-certificates${EXTRA_PACKAGES:+,$EXTRA_PACKAGES}"
debootstrap --variant=minbase --include="$include" \
  bookworm "$root" "$mirror" >"$root.log" 2>&1 || { tail -20 "$root.log" >&2; exit 1; }
rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/*
tar -C "$root" -c . | docker import \
  -c 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' -c 'ENV LANG=C.UTF-8' - "$tag"
rm -f "$root.log"
echo "built $tag"
