#!/usr/bin/env python3
"""One job of steps/augment_data_dir.sh: augmented copies (noise, babble, reverb, speed) of the
utterances of job JOB of NJ, written as 16-bit WAV files, and the job's tables
<out-prefix>.{wav.scp,utt2spk,utt2dur,utt2uniq}. See sslsv.augment.

Usage: augment_data_dir.py [--types noise,babble,reverb] [--speed-factors 0.9,1.1] [--seed 0]
           [--snr-noise 0:15] [--snr-babble 13:20] [--num-babble 3:7] [--rt60 0.2:0.8]
           [--reverb-norm power|direct] [--job J --nj N] [--done-stamp F] [--check-options]
           <wav.scp> <utt2spk> <audio-dir> <out-prefix>
"""
import argparse
import sys

from sslsv.augment import AUG_TYPES, AugOptions, augment_job
from sslsv.logs import setup
from sslsv.tables import DataError


def _range(kind):
    def parse(s: str):
        parts = s.split(":")
        if len(parts) != 2:
            raise argparse.ArgumentTypeError(f"expected LO:HI, got {s!r}")
        try:
            lo, hi = kind(parts[0]), kind(parts[1])
        except ValueError as e:
            raise argparse.ArgumentTypeError(f"bad range {s!r}: {e}") from e
        if lo > hi:
            raise argparse.ArgumentTypeError(f"empty range {s!r}")
        return lo, hi
    return parse


def _types(s: str) -> tuple[str, ...]:
    out = tuple(t for t in s.split(",") if t)
    bad = [t for t in out if t not in AUG_TYPES]
    if bad:
        raise argparse.ArgumentTypeError(f"unknown types {bad}; expected some of {','.join(AUG_TYPES)}")
    if len(set(out)) != len(out):
        raise argparse.ArgumentTypeError(f"repeated type in {s!r}")
    return out


def _factors(s: str) -> tuple[float, ...]:
    try:
        out = tuple(float(f) for f in s.split(",") if f)
    except ValueError as e:
        raise argparse.ArgumentTypeError(f"bad speed factors {s!r}: {e}") from e
    if any(not 0.5 <= f <= 2.0 or f == 1.0 for f in out):
        raise argparse.ArgumentTypeError(f"speed factors must be in [0.5, 2] and not 1, got {s!r}")
    return out


def main(argv: list[str] | None = None) -> int:
    setup()
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
                                 allow_abbrev=False)
    ap.add_argument("--types", type=_types, default=AUG_TYPES)
    ap.add_argument("--speed-factors", type=_factors, default=())
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--snr-noise", type=_range(float), default=(0.0, 15.0))
    ap.add_argument("--snr-babble", type=_range(float), default=(13.0, 20.0))
    ap.add_argument("--num-babble", type=_range(int), default=(3, 7))
    ap.add_argument("--rt60", type=_range(float), default=(0.2, 0.8))
    ap.add_argument("--reverb-norm", choices=("power", "direct"), default="power")
    ap.add_argument("--job", type=int, default=1)
    ap.add_argument("--nj", type=int, default=1)
    ap.add_argument("--done-stamp")
    ap.add_argument("--check-options", action="store_true", help="only check the options and exit")
    ap.add_argument("wav_scp", nargs="?")
    ap.add_argument("utt2spk", nargs="?")
    ap.add_argument("audio_dir", nargs="?")
    ap.add_argument("out_prefix", nargs="?")
    a = ap.parse_args(argv)
    if a.num_babble[0] < 1:
        ap.error("--num-babble must be at least 1")
    if a.rt60[0] <= 0:
        ap.error("--rt60 must be positive")
    if a.check_options:
        return 0
    if a.out_prefix is None:
        ap.error("expected <wav.scp> <utt2spk> <audio-dir> <out-prefix>")
    opts = AugOptions(types=a.types, speed_factors=a.speed_factors, seed=a.seed, snr_noise=a.snr_noise,
                      snr_babble=a.snr_babble, num_babble=a.num_babble, rt60=a.rt60,
                      reverb_norm=a.reverb_norm)
    try:
        augment_job(a.wav_scp, a.utt2spk, a.audio_dir, a.out_prefix, opts, a.job, a.nj, a.done_stamp)
    except DataError as e:
        print(f"augment_data_dir.py: ERROR: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
