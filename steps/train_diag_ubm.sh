#!/usr/bin/env bash
# Kaldi's sid/train_diag_ubm.sh: a diagonal-covariance UBM on the sid frame features (deltas, sliding CMN,
# voiced frames) of a data dir.
#
#   steps/train_diag_ubm.sh [options] <data-dir> <dir>
#   e.g. steps/train_diag_ubm.sh --nj 4 --cmd "$train_cmd" data/train exp/diag_ubm
#
# Phase A (one process): reservoir sample of at most num_frames voiced frames, random init with
# initial_gauss_proportion x num_gauss Gaussians, num_iters_init EM iterations with full posteriors and
# splitting (gmm-global-init-from-feats) -> <dir>/0.dubm. Phase B: num_iters EM iterations on the frames
# subsampled by `subsample`, posteriors over the num_gselect Gaussians selected ONCE with 0.dubm; with
# --nj N > 1 the statistics of each of N data parts are computed by `$cmd JOB=1:N` and summed for the
# M-step, with --nj 1 all iterations run in one process (the GPU path). <dir>/<it>.dubm is written
# atomically after each iteration; <dir>/final.dubm is the last. Also written: <dir>/frame_opts (the
# features section, read back by later stages) and logs in <dir>/log/.
#
# Options come from the diag_ubm and features sections of --config. Resumable: a rerun with the same
# inputs and options continues after the last finished iteration; a finished step whose feats.scp,
# vad.scp, config and options did not change is skipped with a one-line notice.
set -euo pipefail

nj=4
cmd=run.py
device=auto
config=conf/ivector.yaml
num_gauss=
seed=0
dtype=float32
help_message="Usage: $0 [options] <data-dir> <dir>
 e.g.: $0 --nj 4 --cmd \"\$train_cmd\" data/train exp/diag_ubm
Options:
  --nj N                 parallel jobs for the statistics (1: all iterations in one process) [$nj]
  --cmd CMD              job launcher, Kaldi run.pl convention [$cmd]
  --device DEV           auto|cpu|cuda|cuda:N [$device]
  --config FILE          YAML config with diag_ubm and features sections [$config]
  --num-gauss N          override diag_ubm.num_gauss of the config
  --seed N               seed of the frame reservoir, initial means and splits [$seed]
  --dtype T              float32|float64: precision of the log-likelihoods (stats are float64) [$dtype]"

if [ -f ./path.sh ]; then . ./path.sh; else . "$(dirname "$0")/../path.sh"; fi
. "$SSLSV_ROOT/utils/parse_options.sh"
. "$SSLSV_ROOT/utils/step_lib.sh"
. "$SSLSV_ROOT/utils/ubm_lib.sh"

[ $# -eq 2 ] || usage
data=$1
dir=$2

positive_int --nj "$nj"
require_files "$data/feats.scp" "$data/vad.scp" "$config"
sets=()
[ -n "$num_gauss" ] && sets+=(--set "num_gauss=$num_gauss")
cv() { python3 -m sslsv.ivector.ubm_options config-value --config "$config" diag_ubm "$1" ${num_gauss:+num_gauss=$num_gauss}; }
num_iters=$(cv num_iters) || die "bad config $config"
nutts=$(wc -l < "$data/feats.scp")
[ "$nj" -le "$nutts" ] || die "--nj $nj is more than the $nutts utterances of $data"
mkdir -p "$dir/log"

# Feature archives are inputs too: recomputed features redo the UBM.
inputs=("$data/feats.scp" "$data/vad.scp" "$config" --archives-of "$data/feats.scp" "$data/vad.scp")
stamp=$dir/log/train_diag_ubm.sslsv.stamp
opts="num_gauss=$num_gauss seed=$seed dtype=$dtype nj=$nj data=$(cd "$data" && pwd)"
up_to_date "$stamp" "$dir/final.dubm" -- "${inputs[@]}" --opts "$opts" && exit 0

# Iteration files of a run with other inputs or options are stale: start again.
restart_if_changed "$dir" "$dir"/[0-9]*.dubm "$dir"/[0-9]*.*.acc "$dir/final.dubm" "$dir/frame_opts" \
  -- "${inputs[@]}" --opts "$opts"

python3 -m sslsv.ivector.ubm_options frame-opts --config "$config" "$dir/frame_opts"
common=(--config "$config" --frame-opts "$dir/frame_opts" --device "$device" --dtype "$dtype" "${sets[@]}")

if [ ! -f "$dir/0.dubm" ]; then
  echo "$0: initialising the diagonal UBM from $data (log in $dir/log/init.log)"
  $cmd "$dir/log/init.log" ubm.py init-diag "${common[@]}" --seed "$seed" "$data" "$dir/0.dubm" \
    || failed "initialisation failed" "$dir/log/init.log"
  grep "init iteration" "$dir/log/init.log" | tail -1 | sed "s|^|$0: |"
fi

ubm_em diag "$nj" "$data" "$dir" "$num_iters" "${common[@]}"   # -> $dir/final.dubm
stamp.py write "$stamp" "${inputs[@]}" --opts "$opts"
echo "$0: wrote $dir/final.dubm ($num_iters EM iterations after init; frame options in $dir/frame_opts)"
