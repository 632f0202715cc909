#!/usr/bin/env bash
# Scoring of verification trials on network embeddings (NNET.md §6.4-6.6): cosine after subtracting
# the mean of the training embeddings, and AS-norm against a cohort of the training (pseudo-)speaker
# means (or, without --utt2spk, of the training utterance vectors), then EER and minDCF
# (p_target 0.01, 0.001, 0.05) with Kaldi's compute-eer / compute_min_dcf.py definitions.
#
#   steps/score_trials.sh [options] <trials> <train-emb-dir> <test-emb-dir> <out-dir>
#   e.g. steps/score_trials.sh --utt2spk data/train_pl/utt2spk data/test/trials \
#          exp/ecapa/emb_train exp/ecapa/emb_test exp/ecapa/scores
#
# An embedding dir holds xvector.scp (Kaldi float vectors, as kaldiio writes them). Writes
# <out-dir>/mean_vec.npy, <out-dir>/{cosine,asnorm}/{scores,result.json} and <out-dir>/result.json
# (both results, label, top_n, cohort size and kind) and prints both summary lines. Inputs are checked
# first (every trial utterance in the test xvector.scp, every training utterance in utt2spk). Outputs
# are atomic; an unchanged rerun (same inputs, vector archives and options) is skipped.
set -euo pipefail

cmd=run.py
utt2spk=
top_n=300
label=embedding
help_message="Usage: $0 [options] <trials> <train-emb-dir> <test-emb-dir> <out-dir>
 e.g.: $0 --utt2spk data/train_pl/utt2spk data/test/trials \\
          exp/ecapa/emb_train exp/ecapa/emb_test exp/ecapa/scores
Options:
  --cmd CMD            job launcher, Kaldi run.pl convention [$cmd]
  --utt2spk FILE       (pseudo-)speakers of the training embeddings: the AS-norm cohort is their
                       speaker means [none: the training utterance embeddings themselves]
  --top-n N            AS-norm: cohort cosines kept per vector, capped at the cohort size [$top_n]
  --label TEXT         label written to result.json and printed [$label]"

if [ -f ./path.sh ]; then . ./path.sh; else . "$(dirname "$0")/../path.sh"; fi
. "$SSLSV_ROOT/utils/parse_options.sh"

if [ $# -ne 4 ]; then
  printf '%s\n' "$help_message" >&2; exit 1
fi
trials=$1
train_scp=$2/xvector.scp
test_scp=$3/xvector.scp
dir=$4

for f in "$trials" "$train_scp" "$test_scp" ${utt2spk:+"$utt2spk"}; do
  [ -f "$f" ] || { echo "$0: no such file $f" >&2; exit 1; }
done
case $top_n in
  ''|*[!0-9]*) echo "$0: --top-n must be a positive integer, got '$top_n'" >&2; exit 1 ;;
esac
mkdir -p "$dir/log"
mapfile -t arks < <(awk '{v = $2; sub(/:[0-9]+$/, "", v); print v}' "$train_scp" "$test_scp" | LC_ALL=C sort -u)
stamp=$dir/score_trials.sslsv.stamp
opts="utt2spk=$utt2spk top_n=$top_n label=$label"
inputs=("$trials" "$train_scp" "$test_scp" ${utt2spk:+"$utt2spk"} "${arks[@]}")
summary() { python3 -c "
import json, sys
from sslsv.scoring import summary_line
r = json.load(open(sys.argv[1]))
for k in ('cosine', 'asnorm'):
    print(summary_line(r[k], r[k].get('label')))" "$dir/result.json"; }
done_files=("$dir/result.json" "$dir"/{cosine,asnorm}/{scores,result.json})
up_to_date=true
for f in "${done_files[@]}"; do [ -f "$f" ] || up_to_date=false; done
if $up_to_date && stamp.py check "$stamp" "${inputs[@]}" --opts "$opts"; then
  echo "$0: $dir/result.json is up to date (inputs and options unchanged, $stamp); skipping"
  summary
  exit 0
fi
rm -f "$stamp"

echo "$0: cosine and AS-norm scoring of $trials on $test_scp (mean and cohort from $train_scp" \
     "${utt2spk:+and $utt2spk}; log in $dir/log/score_trials.log)"
if ! $cmd "$dir/log/score_trials.log" \
    score_trials.py embedding --train-scp "$train_scp" ${utt2spk:+--utt2spk "$utt2spk"} --top-n "$top_n" \
      --label "$label" "$trials" "$test_scp" "$dir"; then
  grep -h "ERROR" "$dir/log/score_trials.log" 2>/dev/null | head -5 >&2 || true
  echo "$0: scoring failed; see $dir/log/score_trials.log" >&2
  exit 1
fi
grep -h "NOTICE" "$dir/log/score_trials.log" || true
stamp.py write "$stamp" "${inputs[@]}" --opts "$opts"
echo "$0: wrote $dir/{mean_vec.npy,result.json} and $dir/{cosine,asnorm}/{scores,result.json}"
summary
