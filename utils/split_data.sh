#!/usr/bin/env bash
# Usage: utils/split_data.sh [--per-utt] <data> <num-parts>
# Writes <data>/split<N>/<1..N>/ (per speaker: each speaker whole in one part, parts balanced by
# utterance count) or <data>/split<N>utt/ (--per-utt), each part with every per-utterance file of
# <data> and its own spk2utt. Does nothing if the split exists and is newer than its sources.
set -euo pipefail
root=$(cd "$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")/.." && pwd)
# shellcheck disable=SC1091
[ -n "${SSLSV_ROOT:-}" ] || . "$root/path.sh"
exec python3 "$root/pyscripts/datadir.py" split "$@"
