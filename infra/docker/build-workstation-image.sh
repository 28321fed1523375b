#!/usr/bin/env bash
# The candidate's workstation image (exam mode), with no registry: a debootstrap base with the labs' tools, the
# pinned protocol libraries from a local wheelhouse, an unprivileged `candidate` user and sshd. Nothing of the
# labs (briefs' sources, hidden tests, reference or flawed solutions) and not aiotlab itself is in it.
# Usage: build-workstation-image.sh [TAG] [BASE_TAG]  (defaults aiotlab-workstation:latest, aiotlab-ws-base:bookworm)
set -euo pipefail
here="$(cd "$(dirname "$0")/../.." && pwd)"
tag="${1:-aiotlab-workstation:latest}"
base="${2:-aiotlab-ws-base:bookworm}"
python="${PYTHON:-$here/.venv/bin/python}"
[ -x "$python" ] || python=python3
EXTRA_PACKAGES="openssh-server,mbpoll,mosquitto-clients,openssl,curl,jq,sqlite3,vim-tiny,nano,git,procps,less,iproute2,iputils-ping,netcat-openbsd,bash-completion" \
  "$here/infra/docker/build-base-image.sh" "$base"
ctx="$here/build/workstation-context"
rm -rf "$ctx" && mkdir -p "$ctx/wheels"
# The candidate's Python libraries at exactly the versions the project pins (pyproject.toml is the one source).
"$python" - "$here/pyproject.toml" >"$ctx/requirements.txt" <<'PY'
import sys, tomllib
deps = tomllib.load(open(sys.argv[1], "rb"))["project"]["dependencies"]
wanted = ("pymodbus", "asyncua", "paho-mqtt", "aiomqtt", "prometheus-client", "PyYAML", "cryptography", "jsonschema",
          "rfc3339-validator")  # with it, a candidate's jsonschema checks "date-time" as the grader does
for d in deps:
    if d.split("=")[0].split(">")[0].split("<")[0].strip() in wanted:
        print(d)
PY
"$python" -m pip wheel --quiet --wheel-dir "$ctx/wheels" -r "$ctx/requirements.txt"
cp "$here/infra/docker/Dockerfile.workstation" "$ctx/Dockerfile"
cp "$here/infra/docker/workstation-entrypoint.sh" "$ctx/entrypoint.sh"
cp "$here/infra/docker/workstation-aiotlab.py" "$ctx/aiotlab-plant.py"
docker build -q -t "$tag" --build-arg "BASE_IMAGE=$base" --network none "$ctx"
echo "built $tag"
