#!/usr/bin/env bash
# aiotlab's one entry point on a fresh Debian/Ubuntu machine: installs everything it needs, then runs the job.
#   ./run.sh demo    plant up, reference acquisition against ground truth, summary (the main job)
#   ./run.sh test    lint, format check and the whole test suite over real sockets
#   ./run.sh test-docker  the container tier: a Docker engine (started here if none answers), base images made
#                    with debootstrap, the plant and workstation images from wheelhouses, compose and Docker SDK
#                    plants graded, exam mode (workstations) graded and attacked as a hostile candidate would
#   ./run.sh setup   only install
set -euo pipefail
cd "$(dirname "$0")"
job="${1:-demo}"
shift || true

SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi

say() { printf '\033[1m[aiotlab]\033[0m %s\n' "$*"; }

apt_packages=()
need_cmd() { command -v "$1" >/dev/null 2>&1 || [ -x "/usr/sbin/$1" ] || apt_packages+=("$2"); }
need_cmd mosquitto mosquitto
need_cmd mosquitto_sub mosquitto-clients
need_cmd mbpoll mbpoll
need_cmd prometheus prometheus   # the dashboard lab grades alerts on a real Prometheus (Debian 12: 2.42)
need_cmd promtool prometheus
need_cmd python3 python3
if [ "$job" = "test" ] || [ "$job" = "setup" ]; then
  need_cmd node nodejs
  need_cmd npm npm
fi
if [ "$job" = "test-docker" ]; then
  need_cmd dockerd docker.io
  need_cmd docker-compose docker-compose
  need_cmd debootstrap debootstrap
  need_cmd iptables iptables     # exam mode fences each workstation with host rules
  need_cmd nsenter util-linux
  need_cmd ip iproute2
  need_cmd chromium chromium     # the portal's browser tests: Playwright drives Debian's Chromium
  need_cmd node nodejs           # npm ci of xterm.js for the portal's browser terminal
  need_cmd npm npm
  # the portal's pages are zh-TW: its screenshots (docs/screenshots) need a CJK font
  dpkg -s fonts-noto-cjk >/dev/null 2>&1 || apt_packages+=(fonts-noto-cjk)
fi
if ! python3 -c 'import venv, ensurepip' >/dev/null 2>&1; then apt_packages+=(python3-venv); fi
if [ "${#apt_packages[@]}" -gt 0 ]; then
  say "installing Debian packages: ${apt_packages[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${apt_packages[@]}" >/dev/null
fi
# Debian starts a system-wide Mosquitto on 0.0.0.0:1883 when systemd runs; every plant brings its own broker.
if command -v systemctl >/dev/null 2>&1 && systemctl is-active --quiet mosquitto 2>/dev/null; then
  say "stopping the system mosquitto service (each plant runs its own broker on its own address)"
  $SUDO systemctl disable --now mosquitto >/dev/null 2>&1 || true
fi
# Likewise Debian's Prometheus service (0.0.0.0:9090): the grader starts its own per candidate.
if command -v systemctl >/dev/null 2>&1 && systemctl is-active --quiet prometheus 2>/dev/null; then
  say "stopping the system prometheus service (the grader runs one per candidate)"
  $SUDO systemctl disable --now prometheus >/dev/null 2>&1 || true
fi

python3 - <<'PY' || { echo "aiotlab needs Python >= 3.11" >&2; exit 1; }
import sys
sys.exit(0 if sys.version_info >= (3, 11) else 1)
PY
if [ ! -x .venv/bin/python ]; then
  say "creating .venv"
  python3 -m venv .venv
fi
stamp=.venv/.aiotlab-installed
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
  say "installing Python packages"
  .venv/bin/python -m pip install -q --upgrade pip >/dev/null
  .venv/bin/python -m pip install -q -e '.[dev]'
  touch "$stamp"
fi
export PATH="$PWD/.venv/bin:$PATH"

case "$job" in
  setup)
    # the exam portal's browser terminal: xterm.js and its fit addon, served from aiotlab/portal/static
    say "installing xterm.js for the portal's browser terminal"
    npm ci --prefix aiotlab/portal/static --no-audit --no-fund --loglevel=error >/dev/null
    say "ready: .venv/bin/aiotlab"
    ;;
  demo) exec aiotlab demo "$@" ;;
  test)
    if [ ! -d tests/interop/node_modules/node-opcua-client ]; then
      say "installing node-opcua for the OPC UA interop tests"
      npm ci --prefix tests/interop --no-audit --no-fund --loglevel=error >/dev/null
    fi
    say "ruff check / ruff format --check"
    ruff check .
    ruff format --check .
    say "pytest"
    exec python -m pytest "$@"
    ;;
  test-docker)
    if ! docker info >/dev/null 2>&1; then
      # With its iptables rules: exam mode rests on Docker's isolation between networks (a workstation reaches
      # only its own plant network) plus the host rules the Docker backend adds for each workstation.
      say "starting dockerd (log: build/dockerd.log)"
      mkdir -p build
      $SUDO sh -c 'nohup dockerd >build/dockerd.log 2>&1 &'
      for _ in $(seq 1 60); do docker info >/dev/null 2>&1 && break; sleep 1; done
      docker info >/dev/null 2>&1 || { tail -20 build/dockerd.log >&2; echo "dockerd did not start" >&2; exit 1; }
    fi
    say "base image (debootstrap, docker import)"
    infra/docker/build-base-image.sh aiotlab-base:bookworm
    say "plant image from a local wheelhouse, built with no network"
    infra/docker/build-image.sh aiotlab-plant:latest aiotlab-base:bookworm
    say "workstation image (exam mode: tools, unprivileged user, sshd; no lab material)"
    infra/docker/build-workstation-image.sh aiotlab-workstation:latest aiotlab-ws-base:bookworm
    if [ aiotlab/portal/static/package-lock.json -nt aiotlab/portal/static/node_modules/.package-lock.json ]; then
      say "installing xterm.js for the portal's browser terminal"
      npm ci --prefix aiotlab/portal/static --no-audit --no-fund --loglevel=error >/dev/null
    fi
    say "pytest -m docker"
    exec python -m pytest -m docker tests/docker "$@"
    ;;
  *) echo "usage: ./run.sh [demo|test|test-docker|setup] [args]" >&2; exit 2 ;;
esac
