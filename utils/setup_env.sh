#!/usr/bin/env bash
# Creates (or checks) the recipe's environment: the virtualenv ./venv with the pinned
# Python dependencies, and the external command-line tools the recipe calls.
#
# Usage: utils/setup_env.sh [tool ...]      e.g. utils/setup_env.sh sox flite espeak-ng
#
# Idempotent and fast when nothing changed (a stamp holds the hash of requirements.txt).
# Environment:
#   SSLSV_VENV=dir             where the virtualenv lives (default: <recipe>/venv)
#   SSLSV_SYSTEM_SITE=true     create the venv with --system-site-packages, so that a torch
#                              already installed for the system python (e.g. a CUDA build) is used
#   SSLSV_TORCH_SPEC=spec      what to pip-install when the venv has no torch (default torch==2.13.0)
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
venv=${SSLSV_VENV:-$root/venv}
req=$root/requirements.txt
torch_spec=${SSLSV_TORCH_SPEC:-torch==2.13.0}

# External tools: Debian package that provides each.
declare -A pkg_of=([sox]="sox libsox-fmt-all" [flite]=flite [espeak-ng]=espeak-ng [ffmpeg]=ffmpeg [sbatch]=slurm-wlm [munged]=munge)
missing=()
for tool in "$@"; do
  command -v "$tool" >/dev/null 2>&1 || missing+=("$tool")
done
if [ ${#missing[@]} -gt 0 ]; then
  pkgs=$(for t in "${missing[@]}"; do echo "${pkg_of[$t]:-$t}"; done | tr '\n' ' ')
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "$0: installing missing tools (${missing[*]}) with apt-get: $pkgs" >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >/dev/null
    # shellcheck disable=SC2086
    apt-get install -y -qq $pkgs >/dev/null
  else
    echo "$0: missing tools: ${missing[*]}. Install them, e.g.:" >&2
    echo "    sudo apt-get install -y $pkgs" >&2
    exit 1
  fi
fi

req_hash=$(cat "$req" | sha1sum | cut -d' ' -f1)-${torch_spec}
stamp=$venv/.sslsv-requirements
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$req_hash" ] && [ -x "$venv/bin/python" ]; then
  exit 0
fi

if [ ! -x "$venv/bin/python" ]; then
  py=${PYTHON:-python3}
  command -v "$py" >/dev/null || { echo "$0: $py not found; install Python >= 3.10" >&2; exit 1; }
  site=()
  [ "${SSLSV_SYSTEM_SITE:-false}" = true ] && site=(--system-site-packages)
  echo "$0: creating virtualenv $venv" >&2
  "$py" -m venv "${site[@]}" "$venv"
fi
"$venv/bin/python" -m pip install -q --upgrade pip >/dev/null 2>&1 || true
if ! "$venv/bin/python" -c "import torch" >/dev/null 2>&1; then
  echo "$0: installing $torch_spec into $venv" >&2
  "$venv/bin/python" -m pip install -q "$torch_spec"
fi
echo "$0: installing pinned requirements into $venv" >&2
"$venv/bin/python" -m pip install -q -r "$req"
echo "$req_hash" > "$stamp.tmp" && mv "$stamp.tmp" "$stamp"
echo "$0: environment ready ($("$venv/bin/python" -c 'import torch; print("torch", torch.__version__)'))" >&2
