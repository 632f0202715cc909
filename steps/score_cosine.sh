#!/usr/bin/env bash
# Cosine scoring of verification trials on utterance-level vectors (i-vectors or embeddings), after
# subtracting the mean of a training set (unsupervised: no labels are read), then EER and minDCF
# (p_target 0.01, 0.001, 0.05) with Kaldi's compute-eer / compute_min_dcf.py definitions.
#
#   steps/score_cosine.sh [options] <trials> <test.scp> <out-dir>
#   e.g. steps/score_cosine.sh --mean-scp exp/ivectors_train/ivector.scp data/test/trials \
#          exp/ivectors_test/ivector.scp exp/scores/ivector_cosine
#
# Writes <out-dir>/scores (``enroll test score``) and <out-dir>/result.json and prints the summary line.
# Inputs are checked first (every trial utterance in test.scp). Outputs are atomic; an unchanged rerun
# (same inputs, vector archives and options) is skipped.
set -euo pipefail

cmd=run.py
mean_scp=
label=cosine
help_message="Usage: $0 [options] <trials> <test.scp> <out-dir>
 e.g.: $0 --mean-scp exp/ivectors_train/ivector.scp data/test/trials \\
          exp/ivectors_test/ivector.scp exp/scores/ivector_cosine
Options:
  --cmd CMD            job launcher, Kaldi run.pl convention [$cmd]
  --mean-scp SCP       subtract the mean of these vectors (the training set) before scoring [none]
  --label TEXT         label written to result.json and printed [$label]"

if [ -f ./path.sh ]; then . ./path.sh; else . "$(dirname "$0")/../path.sh"; fi
. "$SSLSV_ROOT/utils/parse_options.sh"

if [ $# -ne 3 ]; then
  printf '%s\n' "$help_message" >&2; exit 1
fi
trials=$1
test_scp=$2
dir=$3

for f in "$trials" "$test_scp" ${mean_scp:+"$mean_scp"}; do
  [ -f "$f" ] || { echo "$0: no such file $f" >&2; exit 1; }
done
mkdir -p "$dir/log"
mapfile -t arks < <(awk '{v = $2; sub(/:[0-9]+$/, "", v); print v}' "$test_scp" ${mean_scp:+"$mean_scp"} \
                    | LC_ALL=C sort -u)
stamp=$dir/score_cosine.sslsv.stamp
opts="mean_scp=$mean_scp label=$label"
inputs=("$trials" "$test_scp" ${mean_scp:+"$mean_scp"} "${arks[@]}")
summary() { python3 -c "
import json, sys
from sslsv.scoring import summary_line
r = json.load(open(sys.argv[1]))
print(summary_line(r, r.get('label')))" "$dir/result.json"; }
if [ -f "$dir/scores" ] && [ -f "$dir/result.json" ] && stamp.py check "$stamp" "${inputs[@]}" --opts "$opts"; then
  echo "$0: $dir/result.json is up to date (inputs and options unchanged, $stamp); skipping"
  summary
  exit 0
fi
rm -f "$stamp"

echo "$0: cosine scoring of $trials${mean_scp:+ after subtracting the mean of $mean_scp}" \
     "(log in $dir/log/score_cosine.log)"
if ! $cmd "$dir/log/score_cosine.log" \
    score_trials.py cosine ${mean_scp:+--mean-scp "$mean_scp"} --label "$label" "$trials" "$test_scp" "$dir"; then
  grep -h "ERROR" "$dir/log/score_cosine.log" 2>/dev/null | head -5 >&2 || true
  echo "$0: cosine scoring failed; see $dir/log/score_cosine.log" >&2
  exit 1
fi
stamp.py write "$stamp" "${inputs[@]}" --opts "$opts"
echo "$0: wrote $dir/{scores,result.json}"
summary
