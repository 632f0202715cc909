#!/usr/bin/env bash
# Stage 10: the tables and figures of one exp/<name> (Table I, the margin-loss and regulariser tables,
# the correlation heatmaps of clustering metrics vs EER, the clustering curves) -> <out-dir>/RESULTS.md
# and <out-dir>/*.png, from the result files of stages 5-9 alone. A partial exp dir gives a partial
# report that lists what is missing; the report is always rebuilt (it is cheap).
#
#   steps/make_report.sh [options] <exp-dir> <out-dir>
#   e.g. steps/make_report.sh --study conf/study/demo.yaml exp/demo exp/demo/report
set -euo pipefail

corpus=
data=data
study=
head=
config=
command=
help_message="Usage: $0 [options] <exp-dir> <out-dir>
 e.g.: $0 --study conf/study/demo.yaml exp/demo exp/demo/report
Options:
  --corpus NAME     data set prefix (title; <data>/<NAME>_train/spk2utt gives the true speaker count)
  --data DIR        where the data dirs are [$data]
  --study FILE      study grid (conf/study/*.yaml): its cells not yet run are listed as missing
  --head H          head of the reference system of Table I and the heatmaps [the most common]
  --config STEM     embedding config of the reference system [the most common]
  --command TEXT    the command RESULTS.md names as the one that made it [this script's command line]"

if [ -f ./path.sh ]; then . ./path.sh; else . "$(dirname "$0")/../path.sh"; fi
. "$SSLSV_ROOT/utils/parse_options.sh"
. "$SSLSV_ROOT/utils/step_lib.sh"

[ $# -eq 2 ] || usage
exp=$1
out=$2
[ -d "$exp" ] || die "no such exp dir $exp (run the earlier stages first)"
[ -z "$study" ] || [ -f "$study" ] || die "no such study file $study"
corpus=${corpus:-$(basename "$exp")}
nspk=()
[ -f "$data/${corpus}_train/spk2utt" ] && nspk=(--num-speakers "$(wc -l < "$data/${corpus}_train/spk2utt")")
mkdir -p "$out"
make_report.py --corpus "$corpus" ${study:+--study "$study"} ${head:+--head "$head"} \
  ${config:+--config "$config"} "${nspk[@]}" --command "${command:-$0 $*}" "$exp" "$out"
