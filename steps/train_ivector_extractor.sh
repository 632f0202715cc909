#!/usr/bin/env bash
# Kaldi's sid/train_ivector_extractor.sh: the augmented total-variability i-vector extractor
# (docs/ivector.md §6) on the sid frame features of a data dir, aligned by a full UBM.
#
#   steps/train_ivector_extractor.sh [options] <ubm-dir> <data-dir> <dir>
#   e.g. steps/train_ivector_extractor.sh --nj 4 --cmd "$train_cmd" exp/full_ubm data/train exp/extractor
#
# <ubm-dir> holds final.ubm and frame_opts (steps/train_full_ubm.sh). With extractor.longest_utts > 0 the
# training uses the N longest utterances (by utt2num_frames), in <dir>/train_data.
#   stage -1: frame posteriors (gselect 20 by the diagonal UBM, full-covariance softmax, pruned at
#             min_post) ONCE per data part -> <dir>/post.JOB.npz (sparse), reused by every iteration;
#   init:     <dir>/0.ie (prior offset 100, M_c[:,0] = mean/100, other columns N(0,1) from --seed);
#   iter k:   by default every iteration in one process (--iter-jobs 1: reads the nj posterior files in
#             turn; torch's threads or the GPU do the parallel work, and nothing is started per iteration:
#             36 s instead of 61 s for stage 4 on speechocean762, docs/benchmarks.md); with
#             --iter-jobs N > 1 (a cluster without GPUs; N = nj) the accumulators of each part by
#             `$cmd JOB=1:nj` (<dir>/acc.k.JOB.npz, float64 with R float32), summed, M-step in one
#             process; either way -> <dir>/<k+1>.ie (atomic).
# The auxf/frame of each iteration and its change are printed (they must not decrease). <dir>/final.ie is
# the last model; final.ubm and frame_opts are copied beside it for extraction. An interrupted run resumes
# after the last finished iteration; a finished step whose inputs and options did not change is skipped.
# Memory is bounded by batch_size utterances, not by the corpus. Accumulator size per job at C=2048,
# D=72, S=400: Y 472 MB + R 657 MB (float32 on disk; 1.31 GB float64 in memory) + second order 43 MB.
set -euo pipefail

nj=4
iter_jobs=1
cmd=run.py
device=auto
config=conf/ivector.yaml
ivector_dim=
num_iters=
seed=0
help_message="Usage: $0 [options] <ubm-dir> <data-dir> <dir>
 e.g.: $0 --nj 4 --cmd \"\$train_cmd\" exp/full_ubm data/train exp/extractor
Options:
  --nj N                 parallel jobs for the posteriors [$nj]
  --iter-jobs 1|N        1: every iteration in one process; N (= nj): accumulation in nj jobs per
                         iteration, then an update job [$iter_jobs]
  --cmd CMD              job launcher, Kaldi run.pl convention [$cmd]
  --device DEV           auto|cpu|cuda|cuda:N [$device]
  --config FILE          YAML config with an extractor section [$config]
  --ivector-dim S        override extractor.ivector_dim of the config
  --num-iters N          override extractor.num_iters of the config
  --seed N               seed of the random initial projections [$seed]"

if [ -f ./path.sh ]; then . ./path.sh; else . "$(dirname "$0")/../path.sh"; fi
. "$SSLSV_ROOT/utils/parse_options.sh"
. "$SSLSV_ROOT/utils/step_lib.sh"

[ $# -eq 3 ] || usage
ubmdir=$1
data=$2
dir=$3

positive_int --nj "$nj"
[ "$iter_jobs" = 1 ] || [ "$iter_jobs" = "$nj" ] || die "--iter-jobs must be 1 or --nj ($nj), got '$iter_jobs'"
require_files "$ubmdir/final.ubm" "$ubmdir/frame_opts" "$data/feats.scp" "$data/vad.scp" "$config"
sets=()
[ -n "$ivector_dim" ] && sets+=(--set "ivector_dim=$ivector_dim")
[ -n "$num_iters" ] && sets+=(--set "num_iters=$num_iters")
read -r num_iters longest ivector_dim < <(train_ivector_extractor.py config-value --config "$config" "${sets[@]}" \
  num_iters longest_utts ivector_dim) && [ -n "$ivector_dim" ] || die "bad config $config"
mkdir -p "$dir/log"

inputs=("$ubmdir/final.ubm" "$ubmdir/frame_opts" "$data/feats.scp" "$data/vad.scp" "$config")
[ -f "$data/utt2num_frames" ] && inputs+=("$data/utt2num_frames")
inputs+=(--archives-of "$data/feats.scp" "$data/vad.scp")   # the feature archives, last
stamp=$dir/log/train_ivector_extractor.sslsv.stamp
opts="sets=${sets[*]} seed=$seed nj=$nj data=$(cd "$data" && pwd)"
up_to_date "$stamp" "$dir/final.ie" -- "${inputs[@]}" --opts "$opts" && exit 0

# Posteriors and models of a run with other inputs or options are stale: start again.
restart_if_changed "$dir" "$dir"/[0-9]*.ie "$dir"/post.*.npz "$dir"/acc.*.npz "$dir/final.ie" "$dir/final.ubm" \
  "$dir/frame_opts" "$dir/train_data" -- "${inputs[@]}" --opts "$opts"
cp "$ubmdir/frame_opts" "$dir/frame_opts"
[ -f "$dir/final.ubm" ] || copy_atomic "$ubmdir/final.ubm" "$dir/final.ubm"

traindata=$data
if [ "$longest" -gt 0 ]; then
  traindata=$dir/train_data
  if [ ! -f "$traindata/feats.scp" ]; then
    [ -f "$data/utt2num_frames" ] || die "extractor.longest_utts=$longest needs $data/utt2num_frames"
    utils/subset_data_dir.sh --longest "$longest" "$data" "$traindata.tmp" >&2
    rm -rf "$traindata" && mv "$traindata.tmp" "$traindata"
  fi
  echo "$0: training on the $(wc -l < "$traindata/feats.scp") longest utterances of $data ($traindata)"
fi
nutts=$(wc -l < "$traindata/feats.scp")
[ "$nj" -le "$nutts" ] || die "--nj $nj is more than the $nutts utterances of $traindata"
common=(--config "$config" "${sets[@]}" --device "$device")
fopts=(--frame-opts "$dir/frame_opts")

# stage -1: posteriors once per part
todo=0
for n in $(seq "$nj"); do [ -f "$dir/post.$n.npz" ] || todo=1; done
if [ "$todo" -eq 1 ]; then
  echo "$0: frame posteriors of $traindata under $ubmdir/final.ubm ($nj jobs, logs $dir/log/post.*.log)"
  $cmd JOB=1:"$nj" "$dir/log/post.JOB.log" \
    train_ivector_extractor.py post --keep-existing "${common[@]}" "${fopts[@]}" --part JOB/"$nj" \
      "$dir/final.ubm" "$traindata" "$dir/post.JOB.npz" \
    || failed "posteriors failed" "$dir/log/post.JOB.log"
fi

if [ ! -f "$dir/0.ie" ]; then
  $cmd "$dir/log/init.log" train_ivector_extractor.py init --config "$config" "${sets[@]}" --seed "$seed" \
    "$dir/final.ubm" "$dir/0.ie" || failed "init failed" "$dir/log/init.log"
  grep "^initialised" "$dir/log/init.log" | sed "s|^|$0: |"
fi

start=0
while [ "$start" -lt "$num_iters" ] && [ -f "$dir/$((start + 1)).ie" ]; do start=$((start + 1)); done
[ "$start" -gt 0 ] && echo "$0: resuming after iteration $((start - 1)) ($dir/$start.ie exists)"

if [ "$start" -lt "$num_iters" ]; then
  if [ "$iter_jobs" -eq 1 ]; then
    echo "$0: iterations $start..$((num_iters - 1)) in one process on $device (log in $dir/log/train.$start.log)"
    posts=(); for n in $(seq "$nj"); do posts+=("$dir/post.$n.npz"); done
    $cmd "$dir/log/train.$start.log" train_ivector_extractor.py train "${common[@]}" "${fopts[@]}" \
      "$traindata" "$dir" "${posts[@]}" \
      || failed "training failed" "$dir/log/train.$start.log"
    grep "^iteration" "$dir/log/train.$start.log" | sed "s|^|$0: |"
  else
    for x in $(seq "$start" $((num_iters - 1))); do
      rm -f "$dir"/acc."$x".*.npz
      $cmd JOB=1:"$nj" "$dir/log/acc.$x.JOB.log" \
        train_ivector_extractor.py acc "${common[@]}" "${fopts[@]}" \
          "$dir/$x.ie" "$traindata" "$dir/post.JOB.npz" "$dir/acc.$x.JOB.npz" \
        || failed "statistics failed in iteration $x" "$dir/log/acc.$x.JOB.log"
      accs=(); for n in $(seq "$nj"); do accs+=("$dir/acc.$x.$n.npz"); done
      $cmd "$dir/log/update.$x.log" \
        train_ivector_extractor.py est "${common[@]}" --iter "$x" "$dir/$x.ie" "$dir/$((x + 1)).ie" "${accs[@]}" \
        || failed "update failed in iteration $x" "$dir/log/update.$x.log"
      grep "^iteration" "$dir/log/update.$x.log" | sed "s|^|$0: |"
      rm -f "${accs[@]}"
    done
  fi
fi

copy_atomic "$dir/$num_iters.ie" "$dir/final.ie"
stamp.py write "$stamp" "${inputs[@]}" --opts "$opts"
echo "$0: wrote $dir/final.ie ($num_iters iterations, i-vector dim $ivector_dim; final.ubm and frame_opts beside it)"
