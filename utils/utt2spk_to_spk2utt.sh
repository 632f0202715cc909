#!/usr/bin/env bash
# Usage: utils/utt2spk_to_spk2utt.sh < utt2spk > spk2utt
# As Kaldi's utt2spk_to_spk2utt.pl: speakers in order of first appearance, utterances in input order.
set -euo pipefail
root=$(cd "$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")/.." && pwd)
# shellcheck disable=SC1091
[ -n "${SSLSV_ROOT:-}" ] || . "$root/path.sh"
exec python3 "$root/pyscripts/datadir.py" utt2spk-to-spk2utt "$@"
