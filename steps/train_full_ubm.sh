#!/usr/bin/env bash
# Kaldi's sid/train_full_ubm.sh: a full-covariance UBM started from a diagonal one.
#
#   steps/train_full_ubm.sh [options] <data-dir> <diag-ubm-dir> <dir>
#   e.g. steps/train_full_ubm.sh --nj 4 --cmd "$train_cmd" data/train exp/diag_ubm exp/full_ubm
#
# <dir>/0.ubm is <diag-ubm-dir>/final.dubm with covariances diag(variances) (gmm-global-to-fgmm); then
# num_iters EM iterations on the frames subsampled by `subsample`, posteriors over the num_gselect
# Gaussians selected ONCE with the diagonal of 0.ubm's covariances (fgmm-global-to-gmm), the full-covariance
# update with Kaldi's eigenvalue floor, low-count removal only on the last iteration and only if enabled.
# --nj N > 1: statistics per data part through `$cmd JOB=1:N`, summed for the M-step; --nj 1: one process.
# Writes <dir>/<it>.ubm after each iteration (atomically), <dir>/final.ubm, <dir>/frame_opts (copied from
# the diag-UBM dir, so the frame features are those the diagonal UBM saw) and logs in <dir>/log/.
# Resumable and idempotent like steps/train_diag_ubm.sh.
set -euo pipefail

nj=4
cmd=run.py
device=auto
config=conf/ivector.yaml
dtype=float32
help_message="Usage: $0 [options] <data-dir> <diag-ubm-dir> <dir>
 e.g.: $0 --nj 4 --cmd \"\$train_cmd\" data/train exp/diag_ubm exp/full_ubm
Options:
  --nj N                 parallel jobs for the statistics (1: all iterations in one process) [$nj]
  --cmd CMD              job launcher, Kaldi run.pl convention [$cmd]
  --device DEV           auto|cpu|cuda|cuda:N [$device]
  --config FILE          YAML config with a full_ubm section [$config]
  --dtype T              float32|float64: precision of the log-likelihoods (stats are float64) [$dtype]"

if [ -f ./path.sh ]; then . ./path.sh; else . "$(dirname "$0")/../path.sh"; fi
. "$SSLSV_ROOT/utils/parse_options.sh"
. "$SSLSV_ROOT/utils/step_lib.sh"
. "$SSLSV_ROOT/utils/ubm_lib.sh"

[ $# -eq 3 ] || usage
data=$1
srcdir=$2
dir=$3

positive_int --nj "$nj"
require_files "$data/feats.scp" "$data/vad.scp" "$config" "$srcdir/final.dubm" "$srcdir/frame_opts"
num_iters=$(python3 -m sslsv.ivector.ubm_options config-value --config "$config" full_ubm num_iters) \
  || die "bad config $config"
nutts=$(wc -l < "$data/feats.scp")
[ "$nj" -le "$nutts" ] || die "--nj $nj is more than the $nutts utterances of $data"
mkdir -p "$dir/log"

inputs=("$data/feats.scp" "$data/vad.scp" "$config" "$srcdir/final.dubm" "$srcdir/frame_opts"
        --archives-of "$data/feats.scp" "$data/vad.scp")
stamp=$dir/log/train_full_ubm.sslsv.stamp
opts="dtype=$dtype nj=$nj data=$(cd "$data" && pwd)"
up_to_date "$stamp" "$dir/final.ubm" -- "${inputs[@]}" --opts "$opts" && exit 0

# Iteration files of a run with other inputs or options are stale: start again.
restart_if_changed "$dir" "$dir"/[0-9]*.ubm "$dir"/[0-9]*.*.acc "$dir/final.ubm" "$dir/frame_opts" \
  -- "${inputs[@]}" --opts "$opts"

copy_atomic "$srcdir/frame_opts" "$dir/frame_opts"
common=(--config "$config" --frame-opts "$dir/frame_opts" --device "$device" --dtype "$dtype")

[ -f "$dir/0.ubm" ] || ubm.py init-full "$srcdir/final.dubm" "$dir/0.ubm" > "$dir/log/init.log"

ubm_em full "$nj" "$data" "$dir" "$num_iters" "${common[@]}"   # -> $dir/final.ubm
stamp.py write "$stamp" "${inputs[@]}" --opts "$opts"
echo "$0: wrote $dir/final.ubm ($num_iters EM iterations; frame options in $dir/frame_opts)"
