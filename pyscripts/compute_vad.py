#!/usr/bin/env python3
"""Kaldi compute-vad: energy-based voice activity flags (0/1 per frame) from MFCC column 0.

Usage: compute_vad.py [--config conf/vad.conf] [--stats F] [--source-scp data/x/feats.scp]
           [--done-stamp F] [--stamp-input F ...] [--<kaldi-option>=<value> ...] <feats.scp> <ark> <scp>
"""
import sys

from sslsv.features.jobs import job_parser, parse_job_args, vad_job
from sslsv.features.kaldi_options import read_vad_config
from sslsv.logs import setup
from sslsv.tables import DataError


def main(argv: list[str] | None = None) -> int:
    setup()
    ap = job_parser(__doc__, "compute-vad", "feats.scp")
    ap.add_argument("--stats", help="write '<utts> <frames> <voiced> <unvoiced-utts>' here")
    args, kaldi_opts, stamp_inputs = parse_job_args(ap, argv)
    try:
        vad_job(args.input, read_vad_config(args.config, kaldi_opts), args.ark, args.scp, stats=args.stats,
                source_scp=args.source_scp, done_stamp=args.done_stamp, stamp_inputs=stamp_inputs)
    except DataError as e:
        print(f"compute_vad.py: ERROR: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
