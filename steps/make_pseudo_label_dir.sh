#!/usr/bin/env bash
# Stage 7: a data dir whose speakers are the clusters of stage 6, for training a speaker-embedding network
# on pseudo labels exactly as on a labelled Kaldi data dir.
#
#   steps/make_pseudo_label_dir.sh [options] <src-data-dir> <cluster-dir> <out-data-dir>
#   e.g. steps/make_pseudo_label_dir.sh --min-cluster-size 2 data/train exp/cluster/cimc_c200 data/train_pl_cimc_c200
#
# <cluster-dir>/labels holds <utt> <cluster>. The output has every per-utterance table of <src-data-dir>
# (wav.scp, feats.scp, vad.scp, utt2num_frames, ...) for the kept utterances, utt2spk = utterance ->
# pseudo speaker (pl<cluster>), spk2utt, and pseudo_labels.json with what was dropped: clusters smaller
# than --min-cluster-size, utterances left unassigned (-1) or without a label. Nothing of the true labels
# is carried over. The result passes utils/validate_data_dir.sh --no-spk-sort. Unchanged reruns are skipped.
set -euo pipefail

min_cluster_size=2
help_message="Usage: $0 [options] <src-data-dir> <cluster-dir> <out-data-dir>
 e.g.: $0 data/train exp/cluster/cimc_c200 data/train_pl_cimc_c200
Options:
  --min-cluster-size N   drop clusters with fewer utterances [$min_cluster_size]"

if [ -f ./path.sh ]; then . ./path.sh; else . "$(dirname "$0")/../path.sh"; fi
. "$SSLSV_ROOT/utils/parse_options.sh"
. "$SSLSV_ROOT/utils/step_lib.sh"

[ $# -eq 3 ] || usage
src=$1
cdir=$2
dest=$3
require_files "$src/utt2spk" "$cdir/labels"
positive_int --min-cluster-size "$min_cluster_size"

mkdir -p "$dest"
inputs=("$cdir/labels")
for f in "$src"/*; do [ -f "$f" ] && inputs+=("$f"); done
stamp=$dest/.pseudo_labels.sslsv.stamp
opts="min_cluster_size=$min_cluster_size src=$(cd "$src" && pwd)"
up_to_date "$stamp" "$dest/utt2spk" "$dest/pseudo_labels.json" -- "${inputs[@]}" --opts "$opts" && exit 0
make_pseudo_label_dir.py --min-cluster-size "$min_cluster_size" "$src" "$cdir/labels" "$dest"
no_feats=
[ -f "$src/feats.scp" ] || no_feats=--no-feats
validate_data_dir.sh --no-spk-sort $no_feats "$dest"
stamp.py write "$stamp" "${inputs[@]}" --opts "$opts"
echo "$0: wrote $dest (validated)"
