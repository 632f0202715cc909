#!/usr/bin/env bash
# Kaldi's sid/extract_ivectors.sh: utterance i-vectors of a data dir with a trained extractor.
#
#   steps/extract_ivectors.sh [options] <extractor-dir> <data-dir> <out-dir>
#   e.g. steps/extract_ivectors.sh --nj 4 --cmd "$train_cmd" exp/extractor data/test exp/ivectors_test
#
# <extractor-dir> holds final.ie, final.ubm and frame_opts (steps/train_ivector_extractor.sh). Per
# utterance: posteriors of final.ubm (gselect num_gselect, pruned at min_post, × posterior_scale), then
# the point estimate E[w] and the i-vector E[w] − o·e_0 (float32), as ivector-extract does (acoustic
# weight and max count from the extractor section of --config).
# Writes <out-dir>/ivector.JOB.{ark,scp} (nj per-utterance parts, each resumable with its own done-stamp),
# <out-dir>/ivector.scp (all), and Kaldi's speaker-level outputs spk_ivector.{ark,scp} (per speaker: mean of
# the length-normalised utterance i-vectors, length-normalised again) and num_utts.ark, computed from
# <data-dir>/utt2spk. NOTE: for the TRAINING set of this recipe utt2spk holds the true labels, which the
# self-supervised stages must not read; spk_ivector.scp is kept for Kaldi compatibility and for
# supervised baselines only. A finished step whose inputs and options did not change is skipped.
set -euo pipefail

nj=4
cmd=run.py
device=auto
config=conf/ivector.yaml
help_message="Usage: $0 [options] <extractor-dir> <data-dir> <out-dir>
 e.g.: $0 --nj 4 --cmd \"\$train_cmd\" exp/extractor data/test exp/ivectors_test
Options:
  --nj N                 parallel jobs [$nj]
  --cmd CMD              job launcher, Kaldi run.pl convention [$cmd]
  --device DEV           auto|cpu|cuda|cuda:N [$device]
  --config FILE          YAML config with an extractor section (num_gselect, min_post, posterior_scale,
                         acoustic_weight, max_count, batch_size) [$config]
Outputs: <out-dir>/ivector.scp; also spk_ivector.scp and num_utts.ark from <data-dir>/utt2spk (for the
training set these use TRUE speaker labels: not for the self-supervised stages)."

if [ -f ./path.sh ]; then . ./path.sh; else . "$(dirname "$0")/../path.sh"; fi
. "$SSLSV_ROOT/utils/parse_options.sh"

if [ $# -ne 3 ]; then
  printf '%s\n' "$help_message" >&2; exit 1
fi
srcdir=$1
data=$2
dir=$3

[[ "$nj" =~ ^[1-9][0-9]*$ ]] || { echo "$0: --nj must be a positive integer, got '$nj'" >&2; exit 1; }
for f in "$srcdir/final.ie" "$srcdir/final.ubm" "$srcdir/frame_opts" "$data/feats.scp" "$data/vad.scp" \
         "$data/utt2spk" "$config"; do
  [ -f "$f" ] || { echo "$0: no such file $f" >&2; exit 1; }
done
train_ivector_extractor.py config-value --config "$config" num_gselect > /dev/null \
  || { echo "$0: bad config $config" >&2; exit 1; }
nutts=$(wc -l < "$data/feats.scp")
[ "$nj" -le "$nutts" ] || { echo "$0: --nj $nj is more than the $nutts utterances of $data" >&2; exit 1; }
mkdir -p "$dir/log"

mapfile -t arks < <(awk '{v = $2; sub(/:[0-9]+$/, "", v); print v}' "$data/feats.scp" "$data/vad.scp" | LC_ALL=C sort -u)
inputs=("$srcdir/final.ie" "$srcdir/final.ubm" "$srcdir/frame_opts" "$data/feats.scp" "$data/vad.scp"
        "$data/utt2spk" "$config" "${arks[@]}")
stamp=$dir/log/extract_ivectors.sslsv.stamp
opts="nj=$nj data=$(cd "$data" && pwd)"
if [ -f "$dir/ivector.scp" ] && [ -f "$dir/spk_ivector.scp" ] && \
   stamp.py check "$stamp" "${inputs[@]}" --opts "$opts"; then
  echo "$0: $dir/ivector.scp is up to date (inputs and options unchanged, $stamp); skipping"
  exit 0
fi

echo "$0: extracting i-vectors of $data with $srcdir/final.ie ($nutts utterances, $nj jobs, logs in $dir/log)"
$cmd JOB=1:"$nj" "$dir/log/extract.JOB.log" \
  extract_ivectors.py extract --config "$config" --device "$device" --part JOB/"$nj" \
    --done-stamp "$dir/log/extract.JOB.done" "$srcdir" "$data" "$dir/ivector.JOB.ark" "$dir/ivector.JOB.scp" \
  || { grep -h "ERROR" "$dir"/log/extract.*.log 2>/dev/null | head -5 >&2 || true
       echo "$0: extraction failed; see $dir/log/extract.*.log" >&2; exit 1; }

tmp=$(mktemp -u "$dir/.ivector.scp.XXXXXX")   # -u: the redirect below creates it with the umask's mode
trap 'rm -f "$tmp"' EXIT
for n in $(seq "$nj"); do cat "$dir/ivector.$n.scp"; done | LC_ALL=C sort > "$tmp"
nv=$(wc -l < "$tmp")
[ "$nv" -eq "$nutts" ] || echo "$0: WARNING: i-vectors for $nv of $nutts utterances (the rest have no voiced frames)"
mv "$tmp" "$dir/ivector.scp"
extract_ivectors.py spk "$dir/ivector.scp" "$data/utt2spk" "$dir/spk_ivector.ark" "$dir/spk_ivector.scp" \
  "$dir/num_utts.ark" > "$dir/log/spk_ivector.log" 2>&1 \
  || { echo "$0: speaker i-vectors failed; see $dir/log/spk_ivector.log" >&2; exit 1; }
stamp.py write "$stamp" "${inputs[@]}" --opts "$opts"
change=$(grep -h "mean objf change" "$dir"/log/extract.*.log | awk '{s += $NF; n++} END {if (n) printf "%.4f", s / n}')
echo "$0: wrote $dir/ivector.scp ($nv i-vectors; mean objf change/frame ${change:-?}) and spk_ivector.scp ($(wc -l < "$dir/spk_ivector.scp") speakers)"
