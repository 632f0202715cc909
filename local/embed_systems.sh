#!/usr/bin/env bash
# Stages 7-9 for several label sources, then the verification table: the README's EER table. For each
# clustering method the pseudo-label dir of its stage-6 labels (exp/<name>/cluster/<method>_c<C>) is
# made, the network trained on it and scored; the first also trains the supervised reference. Finished
# systems are skipped (the step scripts' stamps), so an interrupted run resumes.
#
#   local/embed_systems.sh [--methods 'kmeans imsat cimc camsat'] [run.sh options]
#   e.g. local/embed_systems.sh --corpus speechocean762 --corpus-dir ../shared/data/speechocean762-train
#
# Writes exp/<name>/embed/<system>/... and exp/<name>/embed/table.md (pyscripts/embed_table.py).
set -euo pipefail
cd "$(dirname "$0")/.."

methods="kmeans imsat cimc camsat"
args=()
while [ $# -gt 0 ]; do
  case $1 in
    --methods) methods=$2; shift 2 ;;
    --help|-h) sed -n '2,12p' "$0"; exit 0 ;;
    *) args+=("$1"); shift ;;
  esac
done
name=demo; exp=
for ((i = 0; i < ${#args[@]}; i++)); do
  case ${args[i]} in
    --corpus|--name) name=${args[i+1]} ;;
    --exp) exp=${args[i+1]} ;;
  esac
done
for ((i = 0; i < ${#args[@]}; i++)); do [ "${args[i]}" = --name ] && name=${args[i+1]}; done
exp=${exp:-exp/$name}
supervised=true
for m in $methods; do
  ./run.sh "${args[@]}" --stage 7 --stop-stage 9 --cluster-method "$m" --supervised "$supervised"
  supervised=false
done
. ./path.sh
embed_table.py --out "$exp/embed/table.md" "$exp"
