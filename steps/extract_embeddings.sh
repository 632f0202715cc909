#!/usr/bin/env bash
# Stage 9a: speaker embeddings of a data dir with a trained network, as Kaldi float vectors.
#
#   steps/extract_embeddings.sh [options] <model.pt> <data-dir> <out-dir>
#   e.g. steps/extract_embeddings.sh --nj 2 exp/embed/camsat_c100/final.pt data/test exp/embed/camsat_c100/emb_test
#
# The features are the ones the network was trained on (its config: MFCC of the voiced samples, dither 0),
# with CMN over the whole utterance; one forward per utterance (utterances beyond --max-frames by windows).
# Writes <out-dir>/xvector.JOB.{ark,scp} and the merged, sorted <out-dir>/xvector.scp (one entry per
# utterance of wav.scp, checked). An unchanged rerun is skipped.
set -euo pipefail

nj=2
cmd=run.py
device=auto
max_frames=6000
help_message="Usage: $0 [options] <model.pt> <data-dir> <out-dir>
 e.g.: $0 exp/embed/camsat_c100/final.pt data/test exp/embed/camsat_c100/emb_test
Options:
  --nj N             parallel jobs (1 on a GPU) [$nj]
  --cmd CMD          job launcher, Kaldi run.pl convention [$cmd]
  --device D         auto | cpu | cuda [$device]
  --max-frames N     longer utterances are embedded by half-overlapping windows of N frames [$max_frames]"

if [ -f ./path.sh ]; then . ./path.sh; else . "$(dirname "$0")/../path.sh"; fi
. "$SSLSV_ROOT/utils/parse_options.sh"
. "$SSLSV_ROOT/utils/step_lib.sh"

[ $# -eq 3 ] || usage
model=$1
data=$2
dir=$3
positive_int --nj "$nj"
require_files "$model" "$data/wav.scp"
nutts=$(wc -l < "$data/wav.scp")
[ "$nj" -le "$nutts" ] || nj=$nutts
mkdir -p "$dir/log"

inputs=("$model" "$data/wav.scp")
[ -f "$data/vad.scp" ] && inputs+=("$data/vad.scp")
stamp=$dir/log/extract_embeddings.sslsv.stamp
opts="nj=$nj max_frames=$max_frames data=$(cd "$data" && pwd)"
up_to_date "$stamp" "$dir/xvector.scp" -- "${inputs[@]}" --opts "$opts" && exit 0

echo "$0: embedding $nutts utterances of $data with $model ($nj jobs, logs in $dir/log)"
$cmd JOB=1:"$nj" "$dir/log/extract.JOB.log" \
  extract_embeddings.py --device "$device" --part JOB/"$nj" --max-frames "$max_frames" \
    "$model" "$data" "$dir/xvector.JOB.ark" "$dir/xvector.JOB.scp" \
  || failed "extraction failed" "$dir/log/extract.JOB.log"

tmp=$(mktemp -u "$dir/.xvector.scp.XXXXXX")   # -u: the redirect below creates it with the umask's mode
trap 'rm -f "$tmp"' EXIT
merge_jobs "$nj" "$dir/xvector.JOB.scp" > "$tmp"
nv=$(wc -l < "$tmp")
[ "$nv" -eq "$nutts" ] || die "$nv embeddings for $nutts utterances of $data"
mv "$tmp" "$dir/xvector.scp"
stamp.py write "$stamp" "${inputs[@]}" --opts "$opts"
echo "$0: wrote $dir/xvector.scp ($nv embeddings); $(grep -h 'real-time factor' "$dir"/log/extract.1.log | sed 's/^extract_embeddings.py: //')"
