#!/usr/bin/env bash
# Synthesises the embedded demo corpus (flite / espeak-ng voices, per-speaker pitch, formant and channel,
# per-utterance text, rate, reverberation and noise; deterministic for a seed) and writes the data dirs
#   <data-root>/<name>_train/{wav.scp,utt2spk,spk2utt,utt2dur}
#   <data-root>/<name>_test/{wav.scp,utt2spk,spk2utt,utt2dur,trials}      (--name, default demo)
# 16 kHz mono 16-bit WAV files go to <audio-dir>, with a done-stamp: a rerun with the same options is
# skipped, changed options rebuild it. Details: pyscripts/sslsv/corpora/demo.py.
set -euo pipefail

num_train_spk=48
num_test_spk=12
utts_per_spk=16
seed=0
name=demo
nj=$(nproc 2>/dev/null || echo 2)
help_message="Usage: $0 [options] <audio-dir> <data-root>
 e.g.: $0 --nj 4 corpora/demo data
Options:
  --num-train-spk N   [$num_train_spk]  training speakers
  --num-test-spk N    [$num_test_spk]  test speakers (disjoint from the training ones)
  --utts-per-spk N    [$utts_per_spk]  utterances per speaker
  --seed N            [$seed]  same seed, byte-identical audio
  --name NAME         [$name]  data dirs <data-root>/NAME_train and NAME_test
  --nj N              [$nj]  parallel synthesis jobs"

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
. "$root/utils/parse_options.sh"
if [ $# -ne 2 ]; then
  printf '%s\n' "$help_message" >&2
  exit 1
fi
audio_dir=$1
data_root=$2

missing=()
for tool in sox flite espeak-ng; do
  command -v "$tool" >/dev/null 2>&1 || missing+=("$tool")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "$0: the demo corpus needs ${missing[*]} on PATH; install them with your package manager," \
    "e.g. 'sudo apt-get install sox flite espeak-ng' (Debian/Ubuntu) or" \
    "'sudo dnf install sox flite espeak-ng' (Fedora), or run utils/setup_env.sh sox flite espeak-ng" >&2
  exit 1
fi

. "$root/path.sh"
make_demo_corpus.py --num-train-spk "$num_train_spk" --num-test-spk "$num_test_spk" \
  --utts-per-spk "$utts_per_spk" --seed "$seed" --nj "$nj" --name "$name" "$audio_dir" "$data_root"
