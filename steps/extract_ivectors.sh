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
. "$SSLSV_ROOT/utils/step_lib.sh"

[ $# -eq 3 ] || usage
srcdir=$1
data=$2
dir=$3

positive_int --nj "$nj"
require_files "$srcdir/final.ie" "$srcdir/final.ubm" "$srcdir/frame_opts" "$data/feats.scp" "$data/vad.scp" \
  "$data/utt2spk" "$config"
train_ivector_extractor.py config-value --config "$config" num_gselect > /dev/null || die "bad config $config"
nutts=$(wc -l < "$data/feats.scp")
[ "$nj" -le "$nutts" ] || die "--nj $nj is more than the $nutts utterances of $data"
mkdir -p "$dir/log"

inputs=("$srcdir/final.ie" "$srcdir/final.ubm" "$srcdir/frame_opts" "$data/feats.scp" "$data/vad.scp"
        "$data/utt2spk" "$config" --archives-of "$data/feats.scp" "$data/vad.scp")
stamp=$dir/log/extract_ivectors.sslsv.stamp
opts="nj=$nj data=$(cd "$data" && pwd)"
up_to_date "$stamp" "$dir/ivector.scp" "$dir/spk_ivector.scp" -- "${inputs[@]}" --opts "$opts" && exit 0

echo "$0: extracting i-vectors of $data with $srcdir/final.ie ($nutts utterances, $nj jobs, logs in $dir/log)"
$cmd JOB=1:"$nj" "$dir/log/extract.JOB.log" \
  extract_ivectors.py extract --config "$config" --device "$device" --part JOB/"$nj" \
    --done-stamp "$dir/log/extract.JOB.done" "$srcdir" "$data" "$dir/ivector.JOB.ark" "$dir/ivector.JOB.scp" \
  || failed "extraction failed" "$dir/log/extract.JOB.log"

tmp=$(mktemp -u "$dir/.ivector.scp.XXXXXX")   # -u: the redirect below creates it with the umask's mode
trap 'rm -f "$tmp"' EXIT
merge_jobs "$nj" "$dir/ivector.JOB.scp" > "$tmp"
nv=$(wc -l < "$tmp")
[ "$nv" -eq "$nutts" ] || echo "$0: WARNING: i-vectors for $nv of $nutts utterances (the rest have no voiced frames)"
mv "$tmp" "$dir/ivector.scp"
extract_ivectors.py spk "$dir/ivector.scp" "$data/utt2spk" "$dir/spk_ivector.ark" "$dir/spk_ivector.scp" \
  "$dir/num_utts.ark" > "$dir/log/spk_ivector.log" 2>&1 \
  || failed "speaker i-vectors failed" "$dir/log/spk_ivector.log"
stamp.py write "$stamp" "${inputs[@]}" --opts "$opts"
change=$(grep -h "mean objf change" "$dir"/log/extract.*.log | awk '{s += $NF; n++} END {if (n) printf "%.4f", s / n}')
echo "$0: wrote $dir/ivector.scp ($nv i-vectors; mean objf change/frame ${change:-?}) and spk_ivector.scp ($(wc -l < "$dir/spk_ivector.scp") speakers)"
