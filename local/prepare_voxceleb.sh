#!/usr/bin/env bash
# Prepare VoxCeleb1/2 for speaker verification: Kaldi data dirs <data-root>/voxceleb_train and
# <data-root>/voxceleb_test (wav.scp, utt2spk, spk2utt, utt2dur) and the official trial lists in Kaldi
# form in <data-root>/voxceleb_test (trials, trials_O, trials_E, trials_H, trials_O_clean, ...).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)

vox1=
vox2=
trials_dir=
convert_m4a=false
wav_dir=
nj=4
name=voxceleb
help_message=$(cat <<HELP
Usage: $0 [options] <data-root>
 e.g.: $0 --vox1 /corpora/voxceleb1 --vox2 /corpora/voxceleb2 --nj 16 data
Audio trees: VoxCeleb1 <vox1>/wav/idXXXXX/<ytid>/<nnnnn>.wav (dev and test in one tree, as
distributed; <vox1>/dev/wav and <vox1>/test/wav also work); VoxCeleb2 dev
<vox2>/dev/aac/idXXXXX/<ytid>/<nnnnn>.m4a (or <vox2>/aac/...). Utterance ids: idXXXXX-<ytid>-<nnnnn>.
VoxCeleb2 audio goes into wav.scp as 'ffmpeg -v 8 -i <m4a> -f wav -acodec pcm_s16le - |' (ffmpeg must
be on PATH whenever the data dir is read), or with --convert-m4a true as 16 kHz WAV files decoded once.
Trial lists, read from --trials-dir (default: <vox1>): veri_test.txt (or voxceleb1_test_v2.txt),
list_test_all.txt, list_test_hard.txt -> trials_O, trials_E, trials_H; cleaned veri_test2.txt,
list_test_all2.txt, list_test_hard2.txt -> trials_O_clean, trials_E_clean, trials_H_clean.
trials = Vox1-O cleaned if present, else the original Vox1-O (else E, else H). A trial naming an
utterance missing from the VoxCeleb1 tree is an error naming the list file and line.
Speakers: the test set holds every VoxCeleb1 utterance of the speakers in the lists found.
  - Vox1-O lists only: test = the 40 Vox1-O speakers; train = VoxCeleb2 dev + VoxCeleb1 dev.
  - with Vox1-E/H lists: test = all VoxCeleb1 speakers (those in the lists); train = VoxCeleb2 dev
    only, as in the literature (--vox2 is then required; Vox1 speakers in no list are unused).
  Train and test never share a speaker. Kaldi's egs/voxceleb names these sets data/train and
  data/voxceleb1_test; here they are <data-root>/<name>_train and <data-root>/<name>_test.
Options:
  --vox1 DIR         [$vox1]  VoxCeleb1 root (required)
  --vox2 DIR         [$vox2]  VoxCeleb2 root (empty: no VoxCeleb2)
  --trials-dir DIR   [$trials_dir]  where the official trial lists are (default: --vox1)
  --convert-m4a BOOL [$convert_m4a]  decode VoxCeleb2 to WAV once (resumable: finished files are kept)
  --wav-dir DIR      [$wav_dir]  where converted WAVs go (default <data-root>/voxceleb2_wav)
  --nj N             [$nj]  parallel jobs (conversion, duration probing)
  --name NAME        [$name]  data set prefix
HELP
)
# shellcheck disable=SC1091
. "$root/path.sh"
# shellcheck disable=SC1091
. "$root/utils/parse_options.sh"

if [ $# -ne 1 ] || [ -z "$vox1" ]; then
  printf '%s\n' "$help_message" >&2
  exit 1
fi

exec python3 "$root/pyscripts/prepare_voxceleb.py" --vox1 "$vox1" --vox2 "$vox2" --trials-dir "$trials_dir" \
  --convert-m4a "$convert_m4a" --wav-dir "$wav_dir" --nj "$nj" --name "$name" "$1"
