#!/usr/bin/env python3
"""Kaldi compute-mfcc-feats: MFCC (+ raw log-energy) of every utterance of a wav.scp into an ark/scp pair.

Usage: compute_mfcc_feats.py [--config conf/mfcc.conf] [--compress true|false] [--skip-short true|false]
           [--write-utt2num-frames F] [--write-utt2dur F] [--source-scp data/x/wav.scp]
           [--done-stamp F] [--stamp-input F ...] [--<kaldi-option>=<value> ...] <wav.scp> <ark> <scp>

Kaldi options given on the command line (e.g. --dither=0) override the config file, as in Kaldi.
"""
import argparse
import sys

from sslsv.features.jobs import job_parser, mfcc_job, parse_job_args
from sslsv.features.kaldi_options import read_mfcc_config
from sslsv.logs import setup
from sslsv.tables import DataError


def _bool(s: str) -> bool:
    if s not in ("true", "false"):
        raise argparse.ArgumentTypeError(f"expected true or false, got {s!r}")
    return s == "true"


def main(argv: list[str] | None = None) -> int:
    setup()
    ap = job_parser(__doc__, "compute-mfcc-feats", "wav.scp")
    ap.add_argument("--compress", type=_bool, default=False,
                    help="store with Kaldi's lossy compression (copy-feats --compress=true) [false]")
    ap.add_argument("--skip-short", type=_bool, default=False,
                    help="log and skip audio shorter than one frame instead of failing [false]")
    ap.add_argument("--write-utt2num-frames", help="write '<utt> <frames>' lines here")
    ap.add_argument("--write-utt2dur", help="write '<utt> <seconds>' lines here")
    args, kaldi_opts, stamp_inputs = parse_job_args(ap, argv)
    try:
        mfcc_job(args.input, read_mfcc_config(args.config, kaldi_opts), args.ark, args.scp,
                 compress=args.compress, skip_short=args.skip_short, utt2num_frames=args.write_utt2num_frames,
                 utt2dur=args.write_utt2dur, source_scp=args.source_scp, done_stamp=args.done_stamp,
                 stamp_inputs=stamp_inputs)
    except DataError as e:
        print(f"compute_mfcc_feats.py: ERROR: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
