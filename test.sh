#!/usr/bin/env bash
# Runs the recipe's tests: sets up the environment as run.sh does (virtualenv with pinned packages;
# sox, flite, espeak-ng and ffmpeg, which the tests exercise), lints with ruff, then runs pytest.
# Extra arguments go to pytest, e.g. ./test.sh -k mfcc -x
set -euo pipefail
cd "$(dirname "$0")"
utils/setup_env.sh sox flite espeak-ng ffmpeg
. ./path.sh
ruff check pyscripts tests bench local
python -m pytest "$@"
