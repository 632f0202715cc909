#!/usr/bin/env bash
# Stage 2: augmented copies of a data dir, offline, with numpy and sox (no MUSAN/RIR downloads);
# the counterpart of Kaldi's steps/data/augment_data_dir.py + reverberate_data_dir.py +
# perturb_data_dir_speed.sh.
#
#   steps/augment_data_dir.sh [options] <src-data> <out-data>
#   e.g. steps/augment_data_dir.sh --nj 4 --cmd "$train_cmd" data/train data/train_aug
#
# For each utterance <utt> of <src-data> and each type of --types, a copy <utt>-<type> (Kaldi's suffix
# convention) of the same speaker:
#   noise   synthetic white/pink/brown noise (sometimes band-limited or pulsing) at SNR --snr-noise dB
#   babble  the sum of --num-babble other utterances of <src-data> picked at random (never the utterance
#           itself; speaker labels are not used to pick them) at SNR --snr-babble dB
#   reverb  a synthetic room impulse response (exponential decay with RT60 drawn from --rt60 seconds and
#           a direct path; output aligned on the direct path, power normalised like Kaldi's
#           wav-reverberate, or --reverb-norm direct: direct sound at the input level)
# and for each --speed-factors F a copy sp<F>-<utt> of speaker sp<F>-<spk> (sox speed, as Kaldi's
# perturb_data_dir_speed.sh). The clean utterances are not included: combine them with
# utils/combine_data.sh. See pyscripts/sslsv/augment.py for the definitions.
#
# Writes 16-bit WAV files under --audio-dir (default <out-data>/audio, <type>/<new-utt>.wav) and in
# <out-data>: wav.scp, utt2spk, spk2utt, utt2dur, utt2uniq (copy -> source utterance) and spk2gender
# if the source has one. The random draws of each copy depend only on --seed, the type and the source
# utterance id: any --nj gives the same files. Each job writes its files atomically and a done-stamp, so a
# rerun after a kill redoes only unfinished jobs; a finished step whose inputs and options did not change
# is skipped with a one-line notice (whatever --nj: the output does not depend on it).
set -euo pipefail

nj=4
cmd=run.py
seed=0
types=noise,babble,reverb
speed_factors=
snr_noise=0:15
snr_babble=13:20
num_babble=3:7
rt60=0.2:0.8
reverb_norm=power
audio_dir=
help_message="Usage: $0 [options] <src-data> <out-data>
 e.g.: $0 --nj 4 --cmd \"\$train_cmd\" data/train data/train_aug
Options:
  --nj N                    number of parallel jobs [$nj]
  --cmd CMD                 job launcher, Kaldi run.pl convention [$cmd]
  --seed N                  random seed [$seed]
  --types LIST              comma-separated subset of noise,babble,reverb (may be empty) [$types]
  --speed-factors LIST      e.g. 0.9,1.1: speed-perturbed copies sp<F>-<utt> [${speed_factors:-none}]
  --snr-noise LO:HI         SNR range (dB) of the noise copies [$snr_noise]
  --snr-babble LO:HI        SNR range (dB) of the babble copies [$snr_babble]
  --num-babble LO:HI        number of other utterances in a babble [$num_babble]
  --rt60 LO:HI              RT60 range (s) of the synthetic RIRs [$rt60]
  --reverb-norm power|direct  level after reverberation: input power (Kaldi) or direct path [$reverb_norm]
  --audio-dir DIR           where the WAV files go [<out-data>/audio]"

if [ -f ./path.sh ]; then . ./path.sh; else . "$(dirname "$0")/../path.sh"; fi
. "$SSLSV_ROOT/utils/parse_options.sh"
. "$SSLSV_ROOT/utils/step_lib.sh"

[ $# -eq 2 ] || usage
src=$1
out=$2
audio_dir=${audio_dir:-$out/audio}

positive_int --nj "$nj"
non_negative_int --seed "$seed"
[ -n "$types$speed_factors" ] || die "nothing to do: --types and --speed-factors are both empty"
require_files "$src/wav.scp" "$src/utt2spk"
[ ! -f "$src/segments" ] || die "$src/segments exists: segmented recordings are not supported"
mkdir -p "$out/log" "$audio_dir"
[ "$(cd "$src" && pwd)" != "$(cd "$out" && pwd)" ] || die "<src-data> and <out-data> are the same"
audio_dir=$(cd "$audio_dir" && pwd)
logdir=$out/log

job_opts=(--types "$types" --speed-factors "$speed_factors" --seed "$seed" --snr-noise "$snr_noise"
          --snr-babble "$snr_babble" --num-babble "$num_babble" --rt60 "$rt60" --reverb-norm "$reverb_norm")
# Options are checked (by the job's own parser) before anything is run.
augment_data_dir.py "${job_opts[@]}" --check-options || die "bad options"

stamp=$logdir/augment_data_dir.sslsv.stamp
opts="seed=$seed types=$types speed=$speed_factors snr_noise=$snr_noise snr_babble=$snr_babble"
opts+=" num_babble=$num_babble rt60=$rt60 reverb_norm=$reverb_norm audio_dir=$audio_dir"
up_to_date "$stamp" "$out/wav.scp" -- "$src/wav.scp" "$src/utt2spk" --opts "$opts" && exit 0

utils/validate_data_dir.sh --no-feats "$src" >&2 || die "data dir $src failed validation"
nu=$(wc -l < "$src/wav.scp")
[ "$nj" -le "$nu" ] || nj=$nu

# Temporaries of jobs killed earlier; finished files are never touched here.
find "$audio_dir" -name '.*.tmp' -type f -delete
rm -f "$logdir"/.augment.*.tmp

echo "$0: augmenting $src ($nu utterances; types '$types', speed factors '${speed_factors:-none}'; $nj jobs," \
     "log in $logdir)"
$cmd JOB=1:"$nj" "$logdir/augment.JOB.log" \
  augment_data_dir.py "${job_opts[@]}" --job JOB --nj "$nj" --done-stamp "$logdir/augment.JOB.done" \
    "$src/wav.scp" "$src/utt2spk" "$audio_dir" "$logdir/augment.JOB" \
  || failed "augmentation failed for $src" "$logdir/augment.JOB.log"

# Merge the jobs' tables and check the result before anything in <out-data> is replaced.
tmp=$(mktemp -d "$out/.augment.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
for t in wav.scp utt2spk utt2dur utt2uniq; do
  merge_jobs "$nj" "$logdir/augment.JOB.$t" > "$tmp/$t"
done
utt2spk_to_spk2utt.sh < "$tmp/utt2spk" > "$tmp/spk2utt"
if [ -f "$src/spk2gender" ]; then
  # Speakers of the copies: the source's own, and sp<F>-<spk> for the speed copies.
  awk 'NR == FNR { g[$1] = $2; next }
       { s = $1; if (!(s in g) && match(s, /^sp[0-9.]+-/)) s = substr(s, RLENGTH + 1); if (s in g) print $1, g[s] }' \
      "$src/spk2gender" "$tmp/spk2utt" > "$tmp/spk2gender"
fi
utils/validate_data_dir.sh --no-feats --check-audio "$tmp" 2>&1 | sed "s|$tmp|$out|g" >&2 \
  || { trap - EXIT; die "the merged data dir failed validation (left in $tmp)"; }
n=$(wc -l < "$tmp/wav.scp")

# Features of an earlier, different augmentation would no longer match wav.scp.
rm -f "$out"/{feats.scp,vad.scp,cmvn.scp,utt2num_frames,frame_shift,spk2gender}
for t in wav.scp utt2spk spk2utt utt2dur utt2uniq spk2gender; do
  [ -f "$tmp/$t" ] && mv "$tmp/$t" "$out/$t"
done
stamp.py write "$stamp" "$src/wav.scp" "$src/utt2spk" --opts "$opts"
secs=$(awk '{s += $2} END {printf "%.1f", s}' "$out/utt2dur")
echo "$0: wrote $n augmented utterances ($secs s of audio) of $nu in $src to $out (audio in $audio_dir)"
