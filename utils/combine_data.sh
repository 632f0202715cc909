#!/usr/bin/env bash
# Usage: utils/combine_data.sh <dest> <src1> <src2> ...
# Union of data dirs, C-sorted, spk2utt rebuilt; an id with conflicting entries in two sources is an
# error naming both files and lines. A file only some sources have is left out (with a warning).
set -euo pipefail
root=$(cd "$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")/.." && pwd)
# shellcheck disable=SC1091
[ -n "${SSLSV_ROOT:-}" ] || . "$root/path.sh"
exec python3 "$root/pyscripts/datadir.py" combine "$@"
