#!/usr/bin/env bash
# Usage: utils/spk2utt_to_utt2spk.sh < spk2utt > utt2spk
# As Kaldi's spk2utt_to_utt2spk.pl.
set -euo pipefail
root=$(cd "$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")/.." && pwd)
# shellcheck disable=SC1091
[ -n "${SSLSV_ROOT:-}" ] || . "$root/path.sh"
exec python3 "$root/pyscripts/datadir.py" spk2utt-to-utt2spk "$@"
