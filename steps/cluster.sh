#!/usr/bin/env bash
# Cluster utterance vectors (i-vectors, embeddings) into pseudo speakers with a named method.
#
#   steps/cluster.sh [options] <vector-dir> <out-dir>
#   e.g. steps/cluster.sh --method camsat --num-clusters 200 --views exp/ivectors_train_aug \
#          --utt2spk data/train/utt2spk exp/ivectors_train exp/cluster/camsat_c200
#
# <vector-dir> holds ivector.scp (or embedding.scp); an scp, ark or .npy file also works. The method is
# conf/cluster/<method>.yaml (cluster.py --list shows them all); --config replaces that file and --set
# key=value overrides one parameter. Writes <out-dir>/labels (<utt> <cluster>), metrics.json (the eleven
# clustering metrics; the supervised ones only with --utt2spk, which is read for evaluation and never for
# training or model selection), config.yaml, and for the deep methods curve.tsv, final.pt and ckpt/ (a
# checkpoint per epoch: a killed run continues where it stopped). An unchanged rerun is skipped.
set -euo pipefail

method=kmeans
config=
num_clusters=
views=
utt2uniq=
utt2spk=
device=auto
seed=0
set_opts=
cmd=run.py
help_message="Usage: $0 [options] <vector-dir> <out-dir>
 e.g.: $0 --method cimc --num-clusters 200 --utt2spk data/train/utt2spk exp/ivectors_train exp/cluster/cimc_c200
Options:
  --method NAME        conf/cluster/<NAME>.yaml [$method]; list: cluster.py --list
  --config FILE        use this config instead of conf/cluster/<method>.yaml
  --num-clusters C     number of clusters, for methods that take one [config's value]
  --set-opts 'K=V K2=V2' override parameters of the config (space-separated key=value)
  --views DIR          augmented vectors for CAMSAT-style views (stage 5's ivectors_<train>_aug)
  --utt2uniq FILE      augmented -> clean utterance map [names <utt>-<type>]
  --utt2spk FILE       true speakers, for the evaluation metrics only
  --device D           auto|cpu|cuda|cuda:N [$device]    --seed N [$seed]
  --cmd CMD            job launcher, Kaldi run.pl convention [$cmd]"

if [ -f ./path.sh ]; then . ./path.sh; else . "$(dirname "$0")/../path.sh"; fi
. "$SSLSV_ROOT/utils/parse_options.sh"
. "$SSLSV_ROOT/utils/step_lib.sh"

[ $# -eq 2 ] || usage
src=$1
dir=$2

vec=$src
[ -d "$src" ] && for n in ivector.scp embedding.scp xvector.scp vectors.scp; do
  [ -f "$src/$n" ] && { vec=$src/$n; break; }
done
[ -f "$vec" ] || die "no vectors at $src (expected a dir with ivector.scp, or an scp/ark/npy)"
if [ -n "$config" ]; then cfg=$config; else cfg=$SSLSV_ROOT/conf/cluster/$method.yaml; fi
[ -f "$cfg" ] || die "no config $cfg (methods: $(cd "$SSLSV_ROOT/conf/cluster" && ls ./*.yaml | sed 's|./||; s|.yaml||' | tr '\n' ' '))"
if [ -n "$num_clusters" ]; then   # checked before anything is written (cluster.py checks other inputs)
  [[ $num_clusters =~ ^[1-9][0-9]*$ ]] && [ "$num_clusters" -ge 2 ] ||
    die "--num-clusters must be an integer >= 2, got '$num_clusters'"
  if [[ $vec == *.scp ]] && [ "$num_clusters" -gt "$(wc -l < "$vec")" ]; then
    die "--num-clusters $num_clusters is more than the $(wc -l < "$vec") vectors of $vec"
  fi
fi
view_scp=
if [ -n "$views" ]; then
  view_scp=$views
  [ -d "$views" ] && view_scp=$views/ivector.scp
  [ -f "$view_scp" ] || die "no augmented vectors at $views"
fi
require_files ${utt2uniq:+"$utt2uniq"} ${utt2spk:+"$utt2spk"}

args=(--method "$method" --config "$cfg" --device "$device" --seed "$seed")
[ -n "$num_clusters" ] && args+=(--num-clusters "$num_clusters")
for kv in $set_opts; do args+=(--set "$kv"); done
[ -n "$view_scp" ] && args+=(--views "$view_scp")
[ -n "$utt2uniq" ] && args+=(--utt2uniq "$utt2uniq")
[ -n "$utt2spk" ] && args+=(--utt2spk "$utt2spk")

mkdir -p "$dir/log"
inputs=("$vec" "$cfg" ${view_scp:+"$view_scp"} ${utt2uniq:+"$utt2uniq"} ${utt2spk:+"$utt2spk"}
        --archives-of "$vec" ${view_scp:+"$view_scp"})
stamp=$dir/log/cluster.sslsv.stamp
opts="${args[*]}"
up_to_date "$stamp" "$dir/labels" "$dir/metrics.json" -- "${inputs[@]}" --opts "$opts" && exit 0

echo "$0: clustering $vec with $method (log in $dir/log/cluster.log)"
$cmd "$dir/log/cluster.log" cluster.py "${args[@]}" "$vec" "$dir" || failed "clustering failed" "$dir/log/cluster.log"
stamp.py write "$stamp" "${inputs[@]}" --opts "$opts"
grep -h "^$method: " "$dir/log/cluster.log" | tail -1 || true
echo "$0: wrote $dir/{labels,metrics.json}"
