#!/usr/bin/env bash
# Usage: utils/subset_data_dir.sh [--utt-list F | --spk-list F | --first N | --last N | --shortest N |
#          --longest N | --per-spk N] <src> <dest>
#    or: utils/subset_data_dir.sh [--seed S] <src> <N> <dest>            (N utterances at random)
#    or: utils/subset_data_dir.sh --first|--last|--shortest|--longest|--per-spk <src> <N> <dest>  (Kaldi)
# Copies the chosen utterances with all their per-utterance and per-speaker files (trials where both
# sides are kept). --shortest/--longest rank by utt2num_frames, else utt2dur.
set -euo pipefail
root=$(cd "$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")/.." && pwd)
# shellcheck disable=SC1091
[ -n "${SSLSV_ROOT:-}" ] || . "$root/path.sh"
exec python3 "$root/pyscripts/datadir.py" subset "$@"
