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

if [ $# -ne 3 ]; then
  printf '%s\n' "$help_message" >&2; exit 1
fi
data=$1
srcdir=$2
dir=$3

[[ "$nj" =~ ^[1-9][0-9]*$ ]] || { echo "$0: --nj must be a positive integer, got '$nj'" >&2; exit 1; }
for f in "$data/feats.scp" "$data/vad.scp" "$config" "$srcdir/final.dubm" "$srcdir/frame_opts"; do
  [ -f "$f" ] || { echo "$0: no such file $f" >&2; exit 1; }
done
num_iters=$(python3 -m sslsv.ivector.ubm_options config-value --config "$config" full_ubm num_iters) || { echo "$0: bad config $config" >&2; exit 1; }
nutts=$(wc -l < "$data/feats.scp")
[ "$nj" -le "$nutts" ] || { echo "$0: --nj $nj is more than the $nutts utterances of $data" >&2; exit 1; }
mkdir -p "$dir/log"
errors() { grep -h "ERROR" "$@" 2>/dev/null | head -5 >&2 || true; }

mapfile -t arks < <(awk '{v = $2; sub(/:[0-9]+$/, "", v); print v}' "$data/feats.scp" "$data/vad.scp" | LC_ALL=C sort -u)
inputs=("$data/feats.scp" "$data/vad.scp" "$config" "$srcdir/final.dubm" "$srcdir/frame_opts" "${arks[@]}")
stamp=$dir/log/train_full_ubm.sslsv.stamp
opts="dtype=$dtype nj=$nj data=$(cd "$data" && pwd)"
if [ -f "$dir/final.ubm" ] && stamp.py check "$stamp" "${inputs[@]}" --opts "$opts"; then
  echo "$0: $dir/final.ubm is up to date (inputs and options unchanged, $stamp); skipping"
  exit 0
fi

fp=$(python3 -c 'import sys; from sslsv.stamp import fingerprint; print(fingerprint(sys.argv[2:], sys.argv[1]))' \
     "$opts" "${inputs[@]}")
if [ "$(cat "$dir/.inputs" 2>/dev/null)" != "$fp" ]; then
  rm -f "$dir"/[0-9]*.ubm "$dir"/[0-9]*.*.acc "$dir/final.ubm" "$dir/frame_opts" "$stamp"
  echo "$fp" > "$dir/.inputs"
fi

cp "$srcdir/frame_opts" "$dir/.frame_opts.tmp" && mv "$dir/.frame_opts.tmp" "$dir/frame_opts"
common=(--config "$config" --frame-opts "$dir/frame_opts" --device "$device" --dtype "$dtype")

[ -f "$dir/0.ubm" ] || ubm.py init-full "$srcdir/final.dubm" "$dir/0.ubm" > "$dir/log/init.log"

start=0
for x in $(seq 0 "$num_iters"); do [ -f "$dir/$x.ubm" ] && start=$x; done
[ "$start" -gt 0 ] && echo "$0: resuming after iteration $((start - 1)) ($dir/$start.ubm exists)"

if [ "$start" -lt "$num_iters" ]; then
  if [ "$nj" -eq 1 ]; then
    echo "$0: EM iterations $start..$((num_iters - 1)) in one process on $device (log in $dir/log/train.$start.log)"
    $cmd "$dir/log/train.$start.log" ubm.py train-full "${common[@]}" "$data" "$dir" "$start" \
      || { errors "$dir/log/train.$start.log"; echo "$0: training failed; see $dir/log/train.$start.log" >&2; exit 1; }
    grep "average log-likelihood" "$dir/log/train.$start.log" | sed "s|^[0-9:]* |$0: |"
  else
    for x in $(seq "$start" $((num_iters - 1))); do
      rm -f "$dir/$x".*.acc
      $cmd JOB=1:"$nj" "$dir/log/acc.$x.JOB.log" \
        ubm.py acc-full "${common[@]}" --part JOB/"$nj" "$data" "$dir/$x.ubm" "$dir/0.ubm" "$dir/$x.JOB.acc" \
        || { errors "$dir/log/acc.$x".*.log; echo "$0: statistics failed in iteration $x; see $dir/log/acc.$x.*.log" >&2; exit 1; }
      last=(); [ $((x + 1)) -eq "$num_iters" ] && last=(--last)
      accs=(); for n in $(seq "$nj"); do accs+=("$dir/$x.$n.acc"); done
      $cmd "$dir/log/update.$x.log" \
        ubm.py est-full --config "$config" --iter "$x" "${last[@]}" "$dir/$x.ubm" "$dir/$((x + 1)).ubm" "${accs[@]}" \
        || { errors "$dir/log/update.$x.log"; echo "$0: update failed in iteration $x; see $dir/log/update.$x.log" >&2; exit 1; }
      grep "average log-likelihood" "$dir/log/update.$x.log" | sed "s|^[0-9:]* |$0: |"
      rm -f "${accs[@]}"
    done
  fi
fi

cp "$dir/$num_iters.ubm" "$dir/.final.ubm.tmp" && mv "$dir/.final.ubm.tmp" "$dir/final.ubm"
stamp.py write "$stamp" "${inputs[@]}" --opts "$opts"
echo "$0: wrote $dir/final.ubm ($num_iters EM iterations; frame options in $dir/frame_opts)"
