#!/usr/bin/env bash
# Usage: utils/fix_data_dir.sh [--check-audio] [--sample-rate R] [--min-samples N] [--run-pipes] <data>
# Repairs a Kaldi data dir in place: keeps the utterances all files agree on, drops speakers without
# utterances, re-sorts, rebuilds spk2utt; with --check-audio (implied by --sample-rate/--min-samples)
# also drops utterances whose audio is missing, unreadable, empty, not mono or too short.
# Originals of rewritten files go to <data>/.backup/ (never overwritten: a later repair's originals are
# <file>.1, <file>.2, ...); every drop is logged in <data>/.backup/fix_data_dir.log (appended per run),
# and the console line counts the dropped utterances, speakers and trials.
set -euo pipefail
root=$(cd "$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")/.." && pwd)
# shellcheck disable=SC1091
[ -n "${SSLSV_ROOT:-}" ] || . "$root/path.sh"
exec python3 "$root/pyscripts/datadir.py" fix "$@"
