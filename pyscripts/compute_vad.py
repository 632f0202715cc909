#!/usr/bin/env python3
"""Kaldi compute-vad: energy-based voice activity flags (0/1 per frame) from MFCC column 0.

Usage: compute_vad.py [--config conf/vad.conf] [--stats F] [--source-scp data/x/feats.scp]
           [--done-stamp F] [--stamp-input F ...] [--<kaldi-option>=<value> ...] <feats.scp> <ark> <scp>
"""
import argparse
import sys

from sslsv.features.jobs import vad_job
from sslsv.features.kaldi_options import read_vad_config
from sslsv.logs import setup
from sslsv.tables import DataError


def main(argv: list[str] | None = None) -> int:
    setup()
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
                                 allow_abbrev=False)
    ap.add_argument("--config", help="Kaldi option file (compute-vad options)")
    ap.add_argument("--stats", help="write '<utts> <frames> <voiced> <unvoiced-utts>' here")
    ap.add_argument("--source-scp", help="the unsplit feats.scp, so errors name its lines")
    ap.add_argument("--done-stamp", help="skip if this stamp matches inputs/options; write it when done")
    ap.add_argument("--stamp-input", action="append", default=[],
                    help="extra file whose content the done-stamp covers")
    ap.add_argument("feats_scp")
    ap.add_argument("ark")
    ap.add_argument("scp")
    args, rest = ap.parse_known_args(argv)
    bad = [r for r in rest if not (r.startswith("--") and "=" in r)]
    if bad:
        ap.error(f"unexpected arguments {bad} (Kaldi options are given as --name=value)")
    try:
        cfg = read_vad_config(args.config, rest)
        stamp_inputs = tuple(args.stamp_input) + ((args.config,) if args.config else ())
        vad_job(args.feats_scp, cfg, args.ark, args.scp, stats=args.stats, source_scp=args.source_scp,
                done_stamp=args.done_stamp, stamp_inputs=stamp_inputs)
    except DataError as e:
        print(f"compute_vad.py: ERROR: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
