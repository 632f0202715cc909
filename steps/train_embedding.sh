#!/usr/bin/env bash
# Stage 8: train the speaker-embedding network (ECAPA-TDNN + a margin head) on a labelled data dir: the
# pseudo-label dirs of stage 7, or the true labels for the supervised reference.
#
#   steps/train_embedding.sh [options] <data-dir> <out-dir>
#   e.g. steps/train_embedding.sh --cmd "$cuda_cmd" --config conf/embed/ecapa_c512.yaml --nproc 4 \
#          data/vox2_train_pl_camsat_c5994 exp/embed/camsat_c5994
#
# <data-dir> needs wav.scp, utt2spk and (with the config's features.use_vad, the default) vad.scp.
# --nproc N > 1 trains with DDP: torchrun --standalone --nproc_per_node=N, one process per GPU (NCCL), or
# per CPU process with --device cpu (gloo); the job asks the launcher for N GPUs. The learning rate scales
# with N * batch_size / optim.ref_batch, as WeSpeaker's.
# Writes <out-dir>/{final.pt,final.json,train_log.tsv,config.yaml,ckpt/,val_utts,val_trials} (see
# pyscripts/sslsv/embed/trainer.py). A killed run, rerun with the same options, resumes from its last
# finished epoch; a finished run whose inputs and options are unchanged is skipped.
set -euo pipefail

cmd=run.py
config=conf/embed/ecapa_xs.yaml
set_opts=
device=auto
nproc=1
help_message="Usage: $0 [options] <data-dir> <out-dir>
 e.g.: $0 --config conf/embed/ecapa_s.yaml --set-opts 'head.name=adaface' data/train_pl_camsat_c100 exp/embed/x
Options:
  --cmd CMD          job launcher, Kaldi run.pl convention (\$cuda_cmd for GPUs) [$cmd]
  --config FILE      embedding config (conf/embed/*.yaml) [$config]
  --set-opts 'S.K=V ...'  config overrides, e.g. 'head.name=am mixup.kind=imix mixup.alpha=0.5' [$set_opts]
  --device D         auto | cpu | cuda [$device]
  --nproc N          processes (GPUs, or CPU processes with --device cpu); N > 1 uses torchrun/DDP [$nproc]"

if [ -f ./path.sh ]; then . ./path.sh; else . "$(dirname "$0")/../path.sh"; fi
. "$SSLSV_ROOT/utils/parse_options.sh"
. "$SSLSV_ROOT/utils/step_lib.sh"

[ $# -eq 2 ] || usage
data=$1
dir=$2
positive_int --nproc "$nproc"
require_files "$data/wav.scp" "$data/utt2spk" "$config"
mkdir -p "$dir/log"

inputs=("$data/wav.scp" "$data/utt2spk" "$config")
[ -f "$data/vad.scp" ] && inputs+=("$data/vad.scp")
stamp=$dir/log/train_embedding.sslsv.stamp
# The stamp holds the resolved config (file + overrides), so "head.name=aam" on a config whose head is
# aam is the same system as no override; resolving it also reports a bad key before any work.
resolved=$(python3 -m sslsv.embed.config hash "$config" "$set_opts") \
  || die "bad config $config${set_opts:+ with '$set_opts'}"
opts="config=$resolved nproc=$nproc"
up_to_date "$stamp" "$dir/final.pt" -- "${inputs[@]}" --opts "$opts" && exit 0
rm -f "$dir/final.pt" "$dir/final.json"

args=(--config "$config" --set "$set_opts" --device "$device" "$data" "$dir")
launch=("$(command -v train_embedding.py)")
gpu_opt=()
if [ "$nproc" -gt 1 ]; then
  launch=(torchrun --standalone --nnodes=1 --nproc_per_node="$nproc" "${launch[0]}")
  [ "$device" = cpu ] || gpu_opt=(--gpu "$nproc")
fi
echo "$0: training on $data ($(wc -l < "$data/utt2spk") utterances, $(cut -d' ' -f2 "$data/utt2spk" | sort -u | wc -l)" \
     "speakers) with $config${set_opts:+ ($set_opts)}, $nproc process(es); follow $dir/log/train.log"
$cmd "${gpu_opt[@]}" "$dir/log/train.log" "${launch[@]}" "${args[@]}" \
  || failed "training failed" "$dir/log/train.log" "(rerun to resume from the last finished epoch)"
[ -f "$dir/final.pt" ] || die "no $dir/final.pt after training; see $dir/log/train.log"
stamp.py write "$stamp" "${inputs[@]}" --opts "$opts"
# (a resumed run that had finished every epoch only writes final.pt: no epoch line then)
{ grep "train_embedding: epoch [0-9]*:" "$dir/log/train.log" || true; } | tail -1 | sed "s|^|$0: last |"
{ grep "train_embedding: final.pt" "$dir/log/train.log" || true; } | tail -1 | sed "s|^|$0: |"
