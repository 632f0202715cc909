#!/usr/bin/env bash
# Prepare speechocean762 (OpenSLR 101) for speaker verification: Kaldi data dirs
# <data-root>/speechocean762_train and <data-root>/speechocean762_test (wav.scp, utt2spk, spk2utt,
# utt2dur) and <data-root>/speechocean762_test/trials (every pair of test utterances).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)

num_test_spk=25
seed=0
use_pipes=false
nj=1
name=speechocean762
help_message=$(cat <<HELP
Usage: $0 [options] <source-dir> <data-root>
 e.g.: $0 ../shared/data/speechocean762-train data
<source-dir> is either
  - the official distribution: WAVE/SPEAKERnnnn/*.WAV with train/{wav.scp,utt2spk,...} and/or
    test/{...}; wav.scp paths are relative to <source-dir>. With both halves the official split is
    used (--num-test-spk and --seed are then ignored); with one half its speakers are split;
  - a FLAC copy of one half: audio/<utt>.flac and utt2spk; its speakers are split by --seed.
Utterance ids are written as <spk>-<utt> (e.g. 0001-000010011): the official ids start with the
zero-padded speaker id but not with "<spk>-", and Kaldi needs the speaker id as a prefix.
Options:
  --num-test-spk N   [$num_test_spk]  test speakers split off when one half is given (100/25 of 125)
  --seed N           [$seed]   seed of that split
  --use-pipes BOOL   [$use_pipes]  wav.scp holds 'sox <file> -t wav - |' for FLAC (Kaldi binaries
                     read only WAV); false: the FLAC path itself (soundfile reads it). WAV stays a path.
  --nj N             [$nj]   parallel jobs reading audio headers for utt2dur
  --name NAME        [$name]  data set prefix
HELP
)
# shellcheck disable=SC1091
. "$root/path.sh"
# shellcheck disable=SC1091
. "$root/utils/parse_options.sh"

if [ $# -ne 2 ]; then
  printf '%s\n' "$help_message" >&2
  exit 1
fi

exec python3 "$root/pyscripts/prepare_speechocean762.py" --num-test-spk "$num_test_spk" --seed "$seed" \
  --use-pipes "$use_pipes" --nj "$nj" --name "$name" "$1" "$2"
