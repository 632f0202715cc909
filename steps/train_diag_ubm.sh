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

if [ $# -ne 2 ]; then
  printf '%s\n' "$help_message" >&2; exit 1
fi
data=$1
dir=$2

[[ "$nj" =~ ^[1-9][0-9]*$ ]] || { echo "$0: --nj must be a positive integer, got '$nj'" >&2; exit 1; }
for f in "$data/feats.scp" "$data/vad.scp" "$config"; do
  [ -f "$f" ] || { echo "$0: no such file $f" >&2; exit 1; }
done
sets=()
[ -n "$num_gauss" ] && sets+=(--set "num_gauss=$num_gauss")
cv() { python3 -m sslsv.ivector.ubm_options config-value --config "$config" diag_ubm "$1" ${num_gauss:+num_gauss=$num_gauss}; }
num_iters=$(cv num_iters) || { echo "$0: bad config $config" >&2; exit 1; }
nutts=$(wc -l < "$data/feats.scp")
[ "$nj" -le "$nutts" ] || { echo "$0: --nj $nj is more than the $nutts utterances of $data" >&2; exit 1; }
mkdir -p "$dir/log"
errors() { grep -h "ERROR" "$@" 2>/dev/null | head -5 >&2 || true; }

# Feature archives are inputs too: recomputed features redo the UBM.
mapfile -t arks < <(awk '{v = $2; sub(/:[0-9]+$/, "", v); print v}' "$data/feats.scp" "$data/vad.scp" | LC_ALL=C sort -u)
stamp=$dir/log/train_diag_ubm.sslsv.stamp
opts="num_gauss=$num_gauss seed=$seed dtype=$dtype nj=$nj data=$(cd "$data" && pwd)"
if [ -f "$dir/final.dubm" ] && stamp.py check "$stamp" "$data/feats.scp" "$data/vad.scp" "$config" "${arks[@]}" --opts "$opts"; then
  echo "$0: $dir/final.dubm is up to date (inputs and options unchanged, $stamp); skipping"
  exit 0
fi

# Iteration files of a run with other inputs or options are stale: start again.
fp=$(python3 -c 'import sys; from sslsv.stamp import fingerprint; print(fingerprint(sys.argv[2:], sys.argv[1]))' \
     "$opts" "$data/feats.scp" "$data/vad.scp" "$config" "${arks[@]}")
if [ "$(cat "$dir/.inputs" 2>/dev/null)" != "$fp" ]; then
  rm -f "$dir"/[0-9]*.dubm "$dir"/[0-9]*.*.acc "$dir/final.dubm" "$dir/frame_opts" "$stamp"
  echo "$fp" > "$dir/.inputs"
fi

python3 -m sslsv.ivector.ubm_options frame-opts --config "$config" "$dir/frame_opts"
common=(--config "$config" --frame-opts "$dir/frame_opts" --device "$device" --dtype "$dtype" "${sets[@]}")

if [ ! -f "$dir/0.dubm" ]; then
  echo "$0: initialising the diagonal UBM from $data (log in $dir/log/init.log)"
  $cmd "$dir/log/init.log" ubm.py init-diag "${common[@]}" --seed "$seed" "$data" "$dir/0.dubm" \
    || { errors "$dir/log/init.log"; echo "$0: initialisation failed; see $dir/log/init.log" >&2; exit 1; }
  grep "init iteration" "$dir/log/init.log" | tail -1 | sed "s|^|$0: |"
fi

start=0
for x in $(seq 0 "$num_iters"); do [ -f "$dir/$x.dubm" ] && start=$x; done
[ "$start" -gt 0 ] && echo "$0: resuming after iteration $((start - 1)) ($dir/$start.dubm exists)"

if [ "$start" -lt "$num_iters" ]; then
  if [ "$nj" -eq 1 ]; then
    echo "$0: EM iterations $start..$((num_iters - 1)) in one process on $device (log in $dir/log/train.$start.log)"
    $cmd "$dir/log/train.$start.log" ubm.py train-diag "${common[@]}" "$data" "$dir" "$start" \
      || { errors "$dir/log/train.$start.log"; echo "$0: training failed; see $dir/log/train.$start.log" >&2; exit 1; }
    grep "average log-likelihood" "$dir/log/train.$start.log" | sed "s|^[0-9:]* |$0: |"
  else
    for x in $(seq "$start" $((num_iters - 1))); do
      rm -f "$dir/$x".*.acc
      $cmd JOB=1:"$nj" "$dir/log/acc.$x.JOB.log" \
        ubm.py acc-diag "${common[@]}" --part JOB/"$nj" "$data" "$dir/$x.dubm" "$dir/0.dubm" "$dir/$x.JOB.acc" \
        || { errors "$dir/log/acc.$x".*.log; echo "$0: statistics failed in iteration $x; see $dir/log/acc.$x.*.log" >&2; exit 1; }
      last=(); [ $((x + 1)) -eq "$num_iters" ] && last=(--last)
      accs=(); for n in $(seq "$nj"); do accs+=("$dir/$x.$n.acc"); done
      $cmd "$dir/log/update.$x.log" \
        ubm.py est-diag --config "$config" "${sets[@]}" --iter "$x" "${last[@]}" "$dir/$x.dubm" "$dir/$((x + 1)).dubm" "${accs[@]}" \
        || { errors "$dir/log/update.$x.log"; echo "$0: update failed in iteration $x; see $dir/log/update.$x.log" >&2; exit 1; }
      grep "average log-likelihood" "$dir/log/update.$x.log" | sed "s|^[0-9:]* |$0: |"
      rm -f "${accs[@]}"
    done
  fi
fi

cp "$dir/$num_iters.dubm" "$dir/.final.dubm.tmp" && mv "$dir/.final.dubm.tmp" "$dir/final.dubm"
stamp.py write "$stamp" "$data/feats.scp" "$data/vad.scp" "$config" "${arks[@]}" --opts "$opts"
echo "$0: wrote $dir/final.dubm ($num_iters EM iterations after init; frame options in $dir/frame_opts)"
