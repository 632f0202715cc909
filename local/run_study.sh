#!/usr/bin/env bash
# The papers' study on one corpus: every cell of a study grid (conf/study/*.yaml: clustering method x
# number of clusters x input normalisation x margin head x regulariser) through stages 6-9 of run.sh, then
# the report of stage 10. Stages 0-5 run first (skipped when up to date). A finished cell is skipped
# (exp/<name>/study/<study>/<cell>.done, holding the run.sh options it ran with; --force true reruns every
# cell through run.sh, whose stamps still skip the finished steps), so an interrupted study resumes and a
# widened grid runs only its new cells. A failed cell is reported and the others go on.
#
#   local/run_study.sh [--prepare true] [--force false] [--dry-run false] <study.yaml> [run.sh options]
#   e.g. local/run_study.sh conf/study/demo.yaml
#        local/run_study.sh conf/study/speechocean762.yaml --corpus speechocean762 \
#          --corpus-dir ../shared/data/speechocean762-train
#
# Writes exp/<name>/study/<study>/{<cell>.done,cells.tsv} and the report (run.sh --report-dir, default
# exp/<name>/report/RESULTS.md).
{   # the whole script is read before it runs: editing it during a long study cannot change a running one
set -euo pipefail
cd "$(dirname "$0")/.."

prepare=true
force=false
dry_run=false
while [ $# -gt 0 ]; do
  case $1 in
    --prepare) prepare=$2; shift 2 ;;
    --force) force=$2; shift 2 ;;
    --dry-run) dry_run=$2; shift 2 ;;
    --help|-h) sed -n '2,16p' "$0"; exit 0 ;;
    *) break ;;
  esac
done
[ $# -ge 1 ] || { sed -n '2,16p' "$0" >&2; exit 1; }
study=$1; shift
args=("$@")
[ -f "$study" ] || { echo "$0: no study file $study" >&2; exit 1; }

# the corpus name, data and exp dirs, as run.sh derives them from its options
name=; corpus=demo; data=data; exp=
for ((i = 0; i < ${#args[@]}; i++)); do
  case ${args[i]} in
    --corpus) corpus=${args[i+1]} ;;
    --name) name=${args[i+1]} ;;
    --data) data=${args[i+1]} ;;
    --exp) exp=${args[i+1]} ;;
  esac
done
name=${name:-$corpus}
exp=${exp:-exp/$name}
sname=$(basename "$study" .yaml)
sdir=$exp/study/$sname

if [ "$prepare" = true ] && [ "$dry_run" != true ]; then
  ./run.sh "${args[@]}" --stage 0 --stop-stage 5
fi
. ./path.sh
spk2utt=$data/${name}_train/spk2utt
[ -f "$spk2utt" ] || { echo "$0: no $spk2utt (run stages 0-5 first, or drop --prepare false)" >&2; exit 1; }
ntrue=$(wc -l < "$spk2utt")
plan=$(study.py --num-speakers "$ntrue" "$study")
ncells=$(printf '%s\n' "$plan" | wc -l)
echo "$0: $study on $name ($ntrue training speakers): $ncells cells"

mkdir -p "$sdir"
failed=()
k=0
while read -r cell opts; do
  k=$((k + 1))
  eval "cell_opts=($opts)"
  if [ "$force" != true ] && [ -f "$sdir/$cell.done" ] && [ "$(cat "$sdir/$cell.done")" = "$opts" ]; then
    echo "$0: [$k/$ncells] $cell is done ($sdir/$cell.done); skipping"
    continue
  fi
  echo "$0: [$k/$ncells] $cell: ./run.sh ${args[*]} --stage 6 --stop-stage 9 $opts"
  [ "$dry_run" = true ] && continue
  if ./run.sh "${args[@]}" --stage 6 --stop-stage 9 "${cell_opts[@]}" </dev/null; then
    printf '%s\n' "$opts" > "$sdir/$cell.done.tmp" && mv "$sdir/$cell.done.tmp" "$sdir/$cell.done"
    printf '%s\t%s\t%s\t%s\n' "$cell" "$(date '+%F %T')" "$(uname -m), $(nproc) cores" \
      "local/run_study.sh $study ${args[*]}" >> "$sdir/cells.tsv"
  else
    echo "$0: cell $cell failed (see the run.sh output above)" >&2
    failed+=("$cell")
  fi
done <<< "$plan"
[ "$dry_run" = true ] && exit 0

./run.sh "${args[@]}" --stage 10 --stop-stage 10 --study "$study"
[ ${#failed[@]} -eq 0 ] || { echo "$0: failed cells: ${failed[*]}" >&2; exit 1; }
echo "$0: all $ncells cells of $study are done"
exit 0
}
