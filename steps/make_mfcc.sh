#!/usr/bin/env bash
# Kaldi's steps/make_mfcc.sh: MFCC features of a data dir, computed in parallel jobs.
#
#   steps/make_mfcc.sh [options] <data-dir> [<log-dir> [<mfcc-dir>]]
#   e.g. steps/make_mfcc.sh --nj 4 --cmd "$train_cmd" data/train exp/make_mfcc/train mfcc
#
# Writes <mfcc-dir>/raw_mfcc_<name>.JOB.{ark,scp} (one pair per job, each written atomically),
# then <data>/feats.scp, <data>/utt2num_frames, <data>/utt2dur (if absent), <data>/frame_shift and a copy
# of the config in <data>/conf/mfcc.conf. <log-dir> defaults to <data>/log, <mfcc-dir> to <data>/data.
#
# Resumable: each job leaves a done-stamp (raw_mfcc_<name>.JOB.done) and a rerun after a kill recomputes
# only the unfinished jobs, giving byte-identical archives (dither is seeded per utterance). A finished
# step whose wav.scp, audio files, config and options did not change is skipped with a one-line notice.
#
# --compress true stores features with Kaldi's lossy 8-bit "speech feature" compression (as Kaldi's
# make_mfcc.sh does through copy-feats --compress=true; written by kaldiio, readable by Kaldi). The
# default is false: every later stage then sees the exact MFCCs (docs/ivector.md §1.9).
set -euo pipefail

nj=4
cmd=run.py
mfcc_config=conf/mfcc.conf
compress=false
write_utt2num_frames=true
write_utt2dur=true
skip_short=false
help_message="Usage: $0 [options] <data-dir> [<log-dir> [<mfcc-dir>]]
 e.g.: $0 --nj 4 --cmd \"\$train_cmd\" data/train exp/make_mfcc/train mfcc
Options:
  --nj N                         number of parallel jobs [$nj]
  --cmd CMD                      job launcher, Kaldi run.pl convention [$cmd]
  --mfcc-config FILE             Kaldi compute-mfcc-feats option file [$mfcc_config]
  --compress true|false          Kaldi's lossy feature compression (copy-feats --compress) [$compress]
  --write-utt2num-frames true|false   write <data>/utt2num_frames [$write_utt2num_frames]
  --write-utt2dur true|false     write <data>/utt2dur if it does not exist [$write_utt2dur]
  --skip-short true|false        skip (log) audio shorter than one frame instead of failing [$skip_short]"

if [ -f ./path.sh ]; then . ./path.sh; else . "$(dirname "$0")/../path.sh"; fi
. "$SSLSV_ROOT/utils/parse_options.sh"
. "$SSLSV_ROOT/utils/step_lib.sh"

(( $# >= 1 && $# <= 3 )) || usage
data=$1
logdir=${2:-$data/log}
mfccdir=${3:-$data/data}
name=$(basename "$data")

positive_int --nj "$nj"
require_files "$data/wav.scp" "$mfcc_config"
[ ! -f "$data/segments" ] || die "$data/segments exists: segmented recordings are not supported; cut the audio" \
  "into one file per utterance (or a sox 'trim' pipe per utterance in wav.scp)"

mkdir -p "$logdir" "$mfccdir"
mfccdir=$(cd "$mfccdir" && pwd)     # feats.scp names archives by absolute path, as Kaldi's does

stamp=$logdir/make_mfcc_$name.sslsv.stamp
opts="nj=$nj compress=$compress write_utt2num_frames=$write_utt2num_frames write_utt2dur=$write_utt2dur"
opts+=" skip_short=$skip_short mfccdir=$mfccdir"
outputs=("$data/feats.scp")
for n in $(seq "$nj"); do outputs+=("$mfccdir/raw_mfcc_$name.$n.ark"); done
up_to_date "$stamp" "${outputs[@]}" -- "$data/wav.scp" "$mfcc_config" --opts "$opts" && exit 0

# The config is read (and checked, errors name file:line) before anything else is done.
read -r rate min_samples frame_shift_s < <(python3 -m sslsv.features mfcc-config "$mfcc_config") \
  || die "bad MFCC config $mfcc_config"
[ -n "${rate:-}" ] || die "cannot read $mfcc_config"

# The inputs of this step, as a view of the data dir (links to wav.scp, utt2spk, spk2utt, utt2dur, trials)
# under the log dir: it is validated and split, so stale outputs of an earlier run in <data>
# (feats.scp, vad.scp for another wav.scp) neither fail the checks nor are touched before the merge.
view=$logdir/input_$name
mkdir -p "$view"
absdata=$(cd "$data" && pwd)
for f in wav.scp utt2spk spk2utt utt2dur trials; do
  if [ -f "$data/$f" ]; then ln -sfn "$absdata/$f" "$view/$f"; else rm -f "$view/$f"; fi
done
validate_opts=(--no-feats --check-audio --sample-rate "$rate")
[ "$skip_short" = true ] || validate_opts+=(--min-samples "$min_samples")
utils/validate_data_dir.sh "${validate_opts[@]}" "$view" 2>&1 | sed "s|$view/|$data/|g; s|$view|$data|g" >&2 \
  || die "data dir $data failed validation"

utils/split_data.sh --per-utt "$view" "$nj" >&2
sdata=$view/split${nj}utt

# Temporaries of jobs killed earlier; a finished job's files are never touched here.
rm -f "$mfccdir"/.raw_mfcc_"$name".*.tmp

echo "$0: computing MFCC for $data ($(wc -l < "$data/wav.scp") utterances, $nj jobs, log in $logdir)"
$cmd JOB=1:"$nj" "$logdir/make_mfcc_$name.JOB.log" \
  compute_mfcc_feats.py --config "$mfcc_config" --compress "$compress" --skip-short "$skip_short" \
    --write-utt2num-frames "$mfccdir/raw_mfcc_$name.JOB.utt2num_frames" \
    --write-utt2dur "$mfccdir/raw_mfcc_$name.JOB.utt2dur" \
    --source-scp "$data/wav.scp" --done-stamp "$mfccdir/raw_mfcc_$name.JOB.done" \
    "$sdata/JOB/wav.scp" "$mfccdir/raw_mfcc_$name.JOB.ark" "$mfccdir/raw_mfcc_$name.JOB.scp" \
  || failed "MFCC computation failed for $data" "$logdir/make_mfcc_$name.JOB.log"

# Merge the jobs' tables; check them before anything in the data dir is replaced.
tmp=$(mktemp -d "$data/.make_mfcc.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
merge_jobs "$nj" "$mfccdir/raw_mfcc_$name.JOB.scp" > "$tmp/feats.scp"
merge_jobs "$nj" "$mfccdir/raw_mfcc_$name.JOB.utt2num_frames" > "$tmp/utt2num_frames"
merge_jobs "$nj" "$mfccdir/raw_mfcc_$name.JOB.utt2dur" > "$tmp/utt2dur"

nu=$(wc -l < "$data/wav.scp")
nf=$(wc -l < "$tmp/feats.scp")
if [ "$nf" -ne "$nu" ]; then
  missing=$(LC_ALL=C comm -23 <(cut -d' ' -f1 "$data/wav.scp" | LC_ALL=C sort) \
                              <(cut -d' ' -f1 "$tmp/feats.scp"))
  nmiss=$(echo "$missing" | wc -l)
  if [ "$skip_short" = true ] && [ "$nf" -gt 0 ]; then
    echo "$0: WARNING: $nmiss of $nu utterances were skipped (too short, see the logs):" \
         "$(echo "$missing" | head -10 | tr '\n' ' ')"
    echo "$0: run utils/fix_data_dir.sh $data to drop them from the data dir"
  else
    die "ERROR: features for $nf of $nu utterances; missing: $(echo "$missing" | head -20 | tr '\n' ' ')"
  fi
fi

frames=$(awk '{s += $2} END {print s + 0}' "$tmp/utt2num_frames")
mv "$tmp/feats.scp" "$data/feats.scp"
[ "$write_utt2num_frames" = true ] && mv "$tmp/utt2num_frames" "$data/utt2num_frames"
if [ "$write_utt2dur" = true ] && [ ! -f "$data/utt2dur" ]; then mv "$tmp/utt2dur" "$data/utt2dur"; fi
mkdir -p "$data/conf"
cp "$mfcc_config" "$tmp/mfcc.conf" && mv "$tmp/mfcc.conf" "$data/conf/mfcc.conf"
echo "$frame_shift_s" > "$tmp/frame_shift" && mv "$tmp/frame_shift" "$data/frame_shift"

stamp.py write "$stamp" "$data/wav.scp" "$mfcc_config" --opts "$opts"
echo "$0: wrote MFCC of $nf utterances ($frames frames) for $data: $data/feats.scp -> $mfccdir"
