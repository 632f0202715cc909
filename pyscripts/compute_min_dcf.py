#!/usr/bin/env python3
"""Kaldi sid/compute_min_dcf.py: minimum of the normalised detection cost function (NIST SRE16).

Usage: compute_min_dcf.py [--p-target 0.01] [--c-miss 1] [--c-fa 1] <scores-file> <trials-file>
A score whose trial is not in the trials file is an error; trials without a score are ignored.
Prints the minDCF with 4 decimals ("%.4f") on stdout, the threshold on stderr.
"""
import argparse
import sys

from sslsv.scoring import compute_min_dcf, labelled_scores
from sslsv.tables import DataError


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--p-target", type=float, default=0.01, help="prior probability of a target")
    ap.add_argument("--c-miss", type=float, default=1.0, help="cost of a missed detection")
    ap.add_argument("--c-fa", type=float, default=1.0, help="cost of a false alarm")
    ap.add_argument("scores")
    ap.add_argument("trials")
    a = ap.parse_args(argv)
    try:
        s, lab = labelled_scores(a.scores, a.trials)
        v, thr = compute_min_dcf(s, lab, a.p_target, a.c_miss, a.c_fa)
    except (DataError, ValueError) as e:
        print(f"compute_min_dcf.py: ERROR: {e}", file=sys.stderr)
        return 1
    print(f"compute_min_dcf.py: minDCF is {v:.4f} at threshold {thr:.4f} (p-target={a.p_target:g}, "
          f"c-miss={a.c_miss:g}, c-fa={a.c_fa:g})", file=sys.stderr)
    print(f"{v:.4f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
