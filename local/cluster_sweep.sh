#!/usr/bin/env bash
# Stage 6 for many methods and numbers of clusters, then a Markdown table of their metrics: the
# clustering-accuracy table of the README. Finished cells are skipped (steps/cluster.sh's stamps), so an
# interrupted sweep resumes and a widened one only runs the new cells.
#
#   local/cluster_sweep.sh [options] <name>
#   e.g. local/cluster_sweep.sh --multipliers "1 2 4" speechocean762
#
# Reads exp/<name>/ivectors_<name>_train (and _aug views when present) and data/<name>_train/utt2spk
# (for the evaluation metrics and the true count C_true; C = multiplier x C_true). Writes
# exp/<name>/cluster/<method>_c<C>[_s<seed>]/ (names from sslsv.naming, as run.sh gives them) and
# exp/<name>/cluster/table.md. With --vectors DIR the vectors,
# utt2spk, spk2utt and views (DIR/aug with its utt2uniq) come from DIR instead, as
# local/simulate_ivectors.py writes them:
#   local/cluster_sweep.sh --vectors exp/sim/u60_n100k --multipliers 1 --timeout 3600 sim_u60_n100k
set -euo pipefail
cd "$(dirname "$0")/.."

# The README table's methods, kept explicit (not derived from conf/cluster: the *_paper schedules,
# kmeans_faiss and the camsat_infonce variants stay out of it); python3 -m sslsv.cluster methods lists all.
methods="kmeans minibatch_kmeans gmm birch ahc_ward ahc_average spectral dec hdbscan imsat imsat_mixup cimc_minus cimc cimc_plus cimc_plusplus camsat mixup_only supcon_only mixup_supcon vicreg imsat_mixup_vicreg cimc_vicreg"
multipliers="1 2 4"
data=data
exp=
device=auto
seed=0
set_opts=
vectors=
timeout=0
help_message="Usage: $0 [options] <name>
Options:
  --methods 'M1 M2 ...'     [$methods]
  --multipliers 'F1 F2 ...' C = F x the number of training speakers [$multipliers]
  --data DIR [$data]  --exp DIR [exp/<name>]  --device D [$device]  --seed N [$seed]
  --set-opts 'K=V ...'      parameter overrides for every method (e.g. steps=1000)
  --vectors DIR             vectors, utt2spk, spk2utt and aug/ views from DIR (a simulated corpus)
  --timeout S               stop a cell after S seconds and go on (0: no limit) [$timeout]"
. ./path.sh
. utils/parse_options.sh
[ $# -eq 1 ] || { printf '%s\n' "$help_message" >&2; exit 1; }
name=$1
exp=${exp:-exp/$name}
train=$data/${name}_train
ivec=$exp/ivectors_${name}_train
views_opt=()
if [ -n "$vectors" ]; then
  train=$vectors ivec=$vectors
  [ -f "$vectors/aug/ivector.scp" ] && views_opt=(--views "$vectors/aug" --utt2uniq "$vectors/aug/utt2uniq")
elif [ -f "$exp/ivectors_${name}_train_aug/ivector.scp" ]; then
  views_opt=(--views "$exp/ivectors_${name}_train_aug" --utt2uniq "$data/${name}_train_aug/utt2uniq")
fi
[ -f "$ivec/ivector.scp" ] || { echo "$0: no $ivec/ivector.scp (run stages 0-5 first)" >&2; exit 1; }
[ -f "$train/spk2utt" ] || { echo "$0: no $train/spk2utt" >&2; exit 1; }
ntrue=$(wc -l < "$train/spk2utt")
limit=(); [ "$timeout" -gt 0 ] && limit=(timeout "$timeout")
# Whether each method takes a number of clusters, from the registry (its estimator has an n_clusters
# parameter). One that does not (hdbscan) finds it itself: it runs once, at the first multiplier, as
# cluster/<method>.
answers=$(python3 -m sslsv.cluster takes-c $methods)
declare -A takes_c=()
while read -r m yn; do takes_c[$m]=$yn; done <<< "$answers"
read -r first _ <<< "$multipliers"

failed=()
for f in $multipliers; do
  c=$(python3 -m sslsv.naming num-clusters "$f" "$ntrue")
  for m in $methods; do
    nc=(--num-clusters "$c")
    if [ "${takes_c[$m]}" = no ]; then
      [ "$f" = "$first" ] || continue
      nc=()
    fi
    tag=$(python3 -m sslsv.naming cluster-tag --method "$m" "${nc[@]}" --seed "$seed")
    echo "$0: $m, C = $c ($f x $ntrue)"
    if ! "${limit[@]}" steps/cluster.sh --method "$m" "${nc[@]}" --device "$device" --seed "$seed" --set-opts "$set_opts" \
        "${views_opt[@]}" --utt2spk "$train/utt2spk" "$ivec" "$exp/cluster/$tag"; then
      failed+=("$tag")
    fi
  done
done
cluster_table.py --title "$name: clustering of the training i-vectors ($(wc -l < "$ivec/ivector.scp") utterances, $ntrue speakers)" \
  "$exp/cluster" > "$exp/cluster/table.md.tmp" && mv "$exp/cluster/table.md.tmp" "$exp/cluster/table.md"
echo "$0: wrote $exp/cluster/table.md"
[ ${#failed[@]} -eq 0 ] || { echo "$0: failed: ${failed[*]}" >&2; exit 1; }
