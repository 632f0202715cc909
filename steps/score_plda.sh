#!/usr/bin/env bash
# Kaldi's egs/voxceleb/v1 back end (stages 5-6) on utterance-level vectors (i-vectors or embeddings):
# global mean, LDA (--total-covariance-factor 0), length normalisation, two-covariance PLDA (EM), PLDA
# scoring with ivector-plda-scoring's length normalisation, then EER and minDCF (p_target 0.01, 0.001,
# 0.05) with Kaldi's compute-eer / compute_min_dcf.py definitions.
#
#   steps/score_plda.sh [options] <train.scp> <train-utt2spk> <trials> <test.scp> <out-dir>
#   e.g. steps/score_plda.sh exp/ivectors_train/ivector.scp data/train/utt2spk \
#          data/test/trials exp/ivectors_test/ivector.scp exp/scores/ivector_plda
#
# The back end is trained on the vectors of <train.scp> with the speakers of <train-utt2spk> (the true
# labels make it a *supervised back end*; pseudo labels an unsupervised one: say which with --label).
# Writes <out-dir>/mean.vec and transform.mat (Kaldi text vector/matrix), plda (.npz, sslsv.backend) and
# plda.txt (the same model as Kaldi's text <Plda> object, usable by ivector-plda-scoring),
# scores (``enroll test score``), result.json (the label, options, the utt2spk used, metrics), and prints
# the summary line. The LDA dimension is clamped to min(dim, #speakers - 1); --lda-dim 0 skips LDA.
# Inputs are checked first (every trial utterance in test.scp, every training utterance in utt2spk).
# Outputs are atomic; an unchanged rerun (same inputs, vector archives and options) is skipped.
set -euo pipefail

cmd=run.py
config=conf/ivector.yaml
lda_dim=          # empty: from the config's backend section
plda_iters=
smoothing=
label="supervised back end"
help_message="Usage: $0 [options] <train.scp> <train-utt2spk> <trials> <test.scp> <out-dir>
 e.g.: $0 exp/ivectors_train/ivector.scp data/train/utt2spk data/test/trials \\
          exp/ivectors_test/ivector.scp exp/scores/ivector_plda
Options:
  --cmd CMD            job launcher, Kaldi run.pl convention [$cmd]
  --config FILE        YAML config; its 'backend' section gives the defaults below [$config]
  --lda-dim N          LDA output dimension, 0 = no LDA [backend.lda_dim]
  --plda-iters N       PLDA EM iterations [backend.plda_iters]
  --smoothing B        PLDA within-class smoothing in [0, 1] (ivector-copy-plda) [backend.smoothing]
  --label TEXT         label written to result.json and printed [$label]"

if [ -f ./path.sh ]; then . ./path.sh; else . "$(dirname "$0")/../path.sh"; fi
. "$SSLSV_ROOT/utils/parse_options.sh"
. "$SSLSV_ROOT/utils/step_lib.sh"

[ $# -eq 5 ] || usage
train_scp=$1
utt2spk=$2
trials=$3
test_scp=$4
dir=$5

require_files "$train_scp" "$utt2spk" "$trials" "$test_scp" "$config"
# Defaults from the config's backend section; command-line values win.
read -r c_lda c_iters c_smooth < <(python3 -m sslsv.backend options "$config") || die "bad config $config"
lda_dim=${lda_dim:-$c_lda}
plda_iters=${plda_iters:-$c_iters}
smoothing=${smoothing:-$c_smooth}
non_negative_int --lda-dim "$lda_dim"
positive_int --plda-iters "$plda_iters"

mkdir -p "$dir/log"
# The archives the scp files point into are inputs too: re-extracted vectors redo the scoring.
stamp=$dir/score_plda.sslsv.stamp
opts="lda_dim=$lda_dim plda_iters=$plda_iters smoothing=$smoothing label=$label"
inputs=("$train_scp" "$utt2spk" "$trials" "$test_scp" --archives-of "$train_scp" "$test_scp")
summary() { python3 -m sslsv.scoring summary "$dir/result.json"; }
if up_to_date "$stamp" "$dir/result.json" "$dir/scores" -- "${inputs[@]}" --opts "$opts"; then
  summary
  exit 0
fi

echo "$0: training mean/LDA($lda_dim)/PLDA($plda_iters iterations) on $train_scp with $utt2spk;" \
     "scoring $trials (log in $dir/log/score_plda.log)"
$cmd "$dir/log/score_plda.log" \
  score_trials.py plda --lda-dim "$lda_dim" --plda-iters "$plda_iters" --smoothing "$smoothing" \
    --label "$label" "$train_scp" "$utt2spk" "$trials" "$test_scp" "$dir" \
  || failed "PLDA scoring failed" "$dir/log/score_plda.log"
grep -h "NOTICE" "$dir/log/score_plda.log" >&2 || true
stamp.py write "$stamp" "${inputs[@]}" --opts "$opts"
echo "$0: wrote $dir/{mean.vec,transform.mat,plda,plda.txt,scores,result.json}"
summary
