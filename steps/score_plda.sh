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

if [ $# -ne 5 ]; then
  printf '%s\n' "$help_message" >&2; exit 1
fi
train_scp=$1
utt2spk=$2
trials=$3
test_scp=$4
dir=$5

for f in "$train_scp" "$utt2spk" "$trials" "$test_scp" "$config"; do
  [ -f "$f" ] || { echo "$0: no such file $f" >&2; exit 1; }
done
# Defaults from the config's backend section; command-line values win.
read -r c_lda c_iters c_smooth < <(python3 -c "
import sys
from sslsv.config import section
from sslsv.tables import DataError
try:
    s = section(sys.argv[1], 'backend', {'lda_dim': 64, 'plda_iters': 10, 'smoothing': 0.0})
except DataError as e:
    sys.exit(f'ERROR: {e}')
print(s['lda_dim'], s['plda_iters'], s['smoothing'])
" "$config") || { echo "$0: bad config $config" >&2; exit 1; }
lda_dim=${lda_dim:-$c_lda}
plda_iters=${plda_iters:-$c_iters}
smoothing=${smoothing:-$c_smooth}
[[ "$lda_dim" =~ ^[0-9]+$ ]] || { echo "$0: --lda-dim must be a non-negative integer, got '$lda_dim'" >&2; exit 1; }
[[ "$plda_iters" =~ ^[1-9][0-9]*$ ]] || { echo "$0: --plda-iters must be a positive integer, got '$plda_iters'" >&2; exit 1; }

mkdir -p "$dir/log"
# The archives the scp files point into are inputs too: re-extracted vectors redo the scoring.
mapfile -t arks < <(awk '{v = $2; sub(/:[0-9]+$/, "", v); print v}' "$train_scp" "$test_scp" | LC_ALL=C sort -u)
stamp=$dir/score_plda.sslsv.stamp
opts="lda_dim=$lda_dim plda_iters=$plda_iters smoothing=$smoothing label=$label"
inputs=("$train_scp" "$utt2spk" "$trials" "$test_scp" "${arks[@]}")
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

echo "$0: training mean/LDA($lda_dim)/PLDA($plda_iters iterations) on $train_scp with $utt2spk;" \
     "scoring $trials (log in $dir/log/score_plda.log)"
if ! $cmd "$dir/log/score_plda.log" \
    score_trials.py plda --lda-dim "$lda_dim" --plda-iters "$plda_iters" --smoothing "$smoothing" \
      --label "$label" "$train_scp" "$utt2spk" "$trials" "$test_scp" "$dir"; then
  grep -h "ERROR" "$dir/log/score_plda.log" 2>/dev/null | head -5 >&2 || true
  echo "$0: PLDA scoring failed; see $dir/log/score_plda.log" >&2
  exit 1
fi
grep -h "NOTICE" "$dir/log/score_plda.log" >&2 || true
stamp.py write "$stamp" "${inputs[@]}" --opts "$opts"
echo "$0: wrote $dir/{mean.vec,transform.mat,plda,plda.txt,scores,result.json}"
summary
