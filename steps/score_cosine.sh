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
. "$SSLSV_ROOT/utils/step_lib.sh"

[ $# -eq 3 ] || usage
trials=$1
test_scp=$2
dir=$3

require_files "$trials" "$test_scp" ${mean_scp:+"$mean_scp"}
mkdir -p "$dir/log"
stamp=$dir/score_cosine.sslsv.stamp
opts="mean_scp=$mean_scp label=$label"
inputs=("$trials" "$test_scp" ${mean_scp:+"$mean_scp"} --archives-of "$test_scp" ${mean_scp:+"$mean_scp"})
summary() { python3 -m sslsv.scoring summary "$dir/result.json"; }
if up_to_date "$stamp" "$dir/result.json" "$dir/scores" -- "${inputs[@]}" --opts "$opts"; then
  summary
  exit 0
fi

echo "$0: cosine scoring of $trials${mean_scp:+ after subtracting the mean of $mean_scp}" \
     "(log in $dir/log/score_cosine.log)"
$cmd "$dir/log/score_cosine.log" \
  score_trials.py cosine ${mean_scp:+--mean-scp "$mean_scp"} --label "$label" "$trials" "$test_scp" "$dir" \
  || failed "cosine scoring failed" "$dir/log/score_cosine.log"
stamp.py write "$stamp" "${inputs[@]}" --opts "$opts"
echo "$0: wrote $dir/{scores,result.json}"
summary
