#!/usr/bin/env bash
# Kaldi's sid/compute_vad_decision.sh: energy-based voice activity detection from the MFCCs of a data dir.
#
#   steps/compute_vad.sh [options] <data-dir> [<log-dir> [<vad-dir>]]
#   e.g. steps/compute_vad.sh --nj 4 --cmd "$train_cmd" data/train exp/make_vad/train mfcc
#
# Reads <data>/feats.scp (column 0 = raw log-energy) and writes <vad-dir>/vad_<name>.JOB.{ark,scp} and
# <data>/vad.scp (a 0/1 float vector per utterance), then prints the fraction of voiced frames.
# <log-dir> defaults to <data>/log, <vad-dir> to <data>/data. Resumable and idempotent like
# steps/make_mfcc.sh: per-job done-stamps, and a finished step whose feats.scp, feature archives,
# config and options did not change is skipped with a one-line notice.
set -euo pipefail

nj=4
cmd=run.py
vad_config=conf/vad.conf
help_message="Usage: $0 [options] <data-dir> [<log-dir> [<vad-dir>]]
 e.g.: $0 --nj 4 --cmd \"\$train_cmd\" data/train exp/make_vad/train mfcc
Options:
  --nj N               number of parallel jobs [$nj]
  --cmd CMD            job launcher, Kaldi run.pl convention [$cmd]
  --vad-config FILE    Kaldi compute-vad option file [$vad_config]"

if [ -f ./path.sh ]; then . ./path.sh; else . "$(dirname "$0")/../path.sh"; fi
. "$SSLSV_ROOT/utils/parse_options.sh"
. "$SSLSV_ROOT/utils/step_lib.sh"

(( $# >= 1 && $# <= 3 )) || usage
data=$1
logdir=${2:-$data/log}
vaddir=${3:-$data/data}
name=$(basename "$data")

positive_int --nj "$nj"
require_files "$data/feats.scp" "$data/utt2spk" "$vad_config"
mkdir -p "$logdir" "$vaddir"
vaddir=$(cd "$vaddir" && pwd)

# The archives feats.scp points into are part of the input: recomputed features redo the VAD.
inputs=("$data/feats.scp" "$vad_config" --archives-of "$data/feats.scp")
stamp=$logdir/compute_vad_$name.sslsv.stamp
opts="nj=$nj vaddir=$vaddir"
outputs=("$data/vad.scp")
for n in $(seq "$nj"); do outputs+=("$vaddir/vad_$name.$n.ark"); done
up_to_date "$stamp" "${outputs[@]}" -- "${inputs[@]}" --opts "$opts" && exit 0

python3 -m sslsv.features vad-config "$vad_config" || die "bad VAD config $vad_config"

# Split a view of the data dir under the log dir (feats.scp, and utt2spk/spk2utt restricted to the
# utterances that have features), so utterances skipped at MFCC time or a stale vad.scp do not matter.
view=$logdir/vad_input_$name
mkdir -p "$view"
ln -sfn "$(cd "$data" && pwd)/feats.scp" "$view/feats.scp"
awk 'NR == FNR {k[$1]; next} $1 in k' "$data/feats.scp" "$data/utt2spk" > "$view/.utt2spk.new"
cmp -s "$view/.utt2spk.new" "$view/utt2spk" && rm "$view/.utt2spk.new" || mv "$view/.utt2spk.new" "$view/utt2spk"
utils/utt2spk_to_spk2utt.sh < "$view/utt2spk" > "$view/.spk2utt.new"
cmp -s "$view/.spk2utt.new" "$view/spk2utt" && rm "$view/.spk2utt.new" || mv "$view/.spk2utt.new" "$view/spk2utt"
utils/split_data.sh --per-utt "$view" "$nj" >&2
sdata=$view/split${nj}utt
rm -f "$vaddir"/.vad_"$name".*.tmp

echo "$0: computing VAD for $data ($(wc -l < "$data/feats.scp") utterances, $nj jobs, log in $logdir)"
$cmd JOB=1:"$nj" "$logdir/vad_$name.JOB.log" \
  compute_vad.py --config "$vad_config" --stats "$vaddir/vad_$name.JOB.stats" \
    --source-scp "$data/feats.scp" --done-stamp "$vaddir/vad_$name.JOB.done" \
    "$sdata/JOB/feats.scp" "$vaddir/vad_$name.JOB.ark" "$vaddir/vad_$name.JOB.scp" \
  || failed "VAD computation failed for $data" "$logdir/vad_$name.JOB.log"

tmp=$(mktemp -u "$data/.vad.scp.XXXXXX")   # -u: the redirect below creates it with the umask's mode
trap 'rm -f "$tmp"' EXIT
merge_jobs "$nj" "$vaddir/vad_$name.JOB.scp" > "$tmp"
nf=$(wc -l < "$data/feats.scp")
nv=$(wc -l < "$tmp")
[ "$nv" -eq "$nf" ] || echo "$0: WARNING: VAD for $nv of $nf utterances (the rest have no voiced frames;" \
                            "run utils/fix_data_dir.sh $data)"
mv "$tmp" "$data/vad.scp"
stamp.py write "$stamp" "${inputs[@]}" --opts "$opts"
stats=()
for n in $(seq "$nj"); do stats+=("$vaddir/vad_$name.$n.stats"); done
awk -v prog="$0" -v data="$data" '{u += $1; f += $2; v += $3; z += $4}
  END {printf "%s: voiced frames in %s: %d of %d (%.1f %%) in %d utterances; %d without voiced frames\n",
       prog, data, v, f, (f ? 100 * v / f : 0), u, z}' "${stats[@]}"
