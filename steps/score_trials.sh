#!/usr/bin/env bash
# Scoring of verification trials on network embeddings (docs/network.md §6.4-6.6): cosine after subtracting
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
. "$SSLSV_ROOT/utils/step_lib.sh"

[ $# -eq 4 ] || usage
trials=$1
train_scp=$2/xvector.scp
test_scp=$3/xvector.scp
dir=$4

require_files "$trials" "$train_scp" "$test_scp" ${utt2spk:+"$utt2spk"}
case $top_n in
  ''|*[!0-9]*) die "--top-n must be a positive integer, got '$top_n'" ;;
esac
mkdir -p "$dir/log"
stamp=$dir/score_trials.sslsv.stamp
opts="utt2spk=$utt2spk top_n=$top_n label=$label"
inputs=("$trials" "$train_scp" "$test_scp" ${utt2spk:+"$utt2spk"} --archives-of "$train_scp" "$test_scp")
summary() { python3 -m sslsv.scoring summary "$dir/result.json" cosine asnorm; }
outputs=("$dir/result.json" "$dir"/{cosine,asnorm}/{scores,result.json})
if up_to_date "$stamp" "${outputs[@]}" -- "${inputs[@]}" --opts "$opts"; then
  summary
  exit 0
fi

echo "$0: cosine and AS-norm scoring of $trials on $test_scp (mean and cohort from $train_scp" \
     "${utt2spk:+and $utt2spk}; log in $dir/log/score_trials.log)"
$cmd "$dir/log/score_trials.log" \
  score_trials.py embedding --train-scp "$train_scp" ${utt2spk:+--utt2spk "$utt2spk"} --top-n "$top_n" \
    --label "$label" "$trials" "$test_scp" "$dir" \
  || failed "scoring failed" "$dir/log/score_trials.log"
grep -h "NOTICE" "$dir/log/score_trials.log" || true
stamp.py write "$stamp" "${inputs[@]}" --opts "$opts"
echo "$0: wrote $dir/{mean_vec.npy,result.json} and $dir/{cosine,asnorm}/{scores,result.json}"
summary
