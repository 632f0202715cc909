#!/usr/bin/env bash
# Usage: utils/validate_data_dir.sh [--no-feats] [--no-wav] [--no-spk-sort] [--check-audio]
#          [--sample-rate R] [--min-samples N] [--run-pipes] <data>
# Checks a Kaldi data dir as Kaldi's script does (sorted tables with unique keys, utt2spk/spk2utt
# consistent, every per-utterance file covering the same utterances, trials naming known utterances,
# feature archives present) and, with --check-audio, every wav.scp entry (file headers only; pipes
# checked statically unless --run-pipes). Lists up to 10 problems with file:line, then fails.
set -euo pipefail
root=$(cd "$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")/.." && pwd)
# shellcheck disable=SC1091
[ -n "${SSLSV_ROOT:-}" ] || . "$root/path.sh"
exec python3 "$root/pyscripts/datadir.py" validate "$@"
