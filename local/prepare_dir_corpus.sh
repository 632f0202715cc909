#!/usr/bin/env bash
# Prepare your own corpus, one sub-folder per speaker, for speaker verification: Kaldi data dirs
# <data-root>/<name>_train and <data-root>/<name>_test (wav.scp, utt2spk, spk2utt, utt2dur) and
# <data-root>/<name>_test/trials (every pair of test utterances).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)

num_test_spk=
test_fraction=
seed=0
ext=wav,flac
use_pipes=false
nj=1
help_message=$(cat <<HELP
Usage: $0 [options] <dir> <data-root> [<name>]
 e.g.: $0 --num-test-spk 20 /corpora/mine data mine
<dir> holds one sub-folder per speaker; the speaker's audio files may be anywhere below it.
Utterance ids are <spk>-<path below the speaker folder without extension, '/' replaced by '-'>:
<dir>/alice/day1/003.wav -> alice-day1-003. <name> defaults to 'dir'. Speakers are split into disjoint
train and test sets by --seed. Fewer than 2 speakers, audio directly in <dir>, whitespace in an id and
two files with the same id are errors naming the file.
Options:
  --num-test-spk N    [$num_test_spk]  number of test speakers
  --test-fraction F   [$test_fraction]  or the fraction of speakers for test (default 0.2)
  --seed N            [$seed]  seed of the speaker split
  --ext LIST          [$ext]  audio file extensions, comma-separated, any case (e.g. wav,flac,m4a);
                      formats libsndfile cannot read (m4a, aac, opus, ...) become ffmpeg pipes
  --use-pipes BOOL    [$use_pipes]  non-WAV files as 'sox <file> -t wav - |' (for Kaldi binaries)
  --nj N              [$nj]  parallel jobs reading audio headers for utt2dur
HELP
)
# shellcheck disable=SC1091
. "$root/path.sh"
# shellcheck disable=SC1091
. "$root/utils/parse_options.sh"

if [ $# -lt 2 ] || [ $# -gt 3 ]; then
  printf '%s\n' "$help_message" >&2
  exit 1
fi
if [ -n "$num_test_spk" ] && [ -n "$test_fraction" ]; then
  echo "$0: give --num-test-spk or --test-fraction, not both" >&2
  exit 1
fi
opts=(--seed "$seed" --ext "$ext" --use-pipes "$use_pipes" --nj "$nj")
[ -n "$num_test_spk" ] && opts+=(--num-test-spk "$num_test_spk")
[ -n "$test_fraction" ] && opts+=(--test-fraction "$test_fraction")

exec python3 "$root/pyscripts/prepare_dir_corpus.py" "${opts[@]}" "$@"
