#!/usr/bin/env python3
"""Kaldi compute-eer: equal error rate of ``<score> target|nontarget`` lines (the output of Kaldi's
local/prepare_for_eer.py), or of a trials file and a scores file.

Usage: compute_eer.py <score-label-file|->
       compute_eer.py --trials <trials> --scores <scores>
With --trials / --scores, a score whose trial is not in the trials file is an error and trials without
a score are left out (as in compute_min_dcf.py).
Prints the EER in percent with 4 significant digits (as compute-eer does, e.g. "5.329") on stdout and
a log line with the threshold on stderr.
"""
import argparse
import sys

import numpy as np
from sslsv.scoring import compute_eer, labelled_scores
from sslsv.tables import DataError


def read_score_labels(path: str) -> tuple[np.ndarray, np.ndarray]:
    """``<score> target|nontarget`` lines → (target scores, nontarget scores)."""
    name = "<stdin>" if path == "-" else path
    f = sys.stdin if path == "-" else open(path, encoding="utf-8")
    tar: list[float] = []
    non: list[float] = []
    with f:
        for lineno, line in enumerate(f, 1):
            parts = line.split()
            if not parts:
                continue
            if len(parts) != 2 or parts[1] not in ("target", "nontarget"):
                raise DataError(f"{name}:{lineno}: expected '<score> target|nontarget', "
                                f"got {line.rstrip()!r}")
            try:
                s = float(parts[0])
            except ValueError:
                raise DataError(f"{name}:{lineno}: score is not a number: {parts[0]!r}") from None
            (tar if parts[1] == "target" else non).append(s)
    return np.array(tar), np.array(non)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("input", nargs="?", help="'<score> target|nontarget' lines ('-' = stdin)")
    ap.add_argument("--trials")
    ap.add_argument("--scores")
    a = ap.parse_args(argv)
    try:
        if a.trials or a.scores:
            if not (a.trials and a.scores) or a.input:
                ap.error("give either <input> or both --trials and --scores")
            s, lab = labelled_scores(a.scores, a.trials)
            tar, non = s[lab], s[~lab]
        else:
            if not a.input:
                ap.error("no input")
            tar, non = read_score_labels(a.input)
        eer, thr = compute_eer(tar, non)
    except (DataError, ValueError, OSError) as e:
        print(f"compute_eer.py: ERROR: {e}", file=sys.stderr)
        return 1
    print(f"compute_eer.py: Equal error rate is {100.0 * eer:.6g}%, at threshold {thr:.6g} "
          f"({len(tar)} target, {len(non)} nontarget scores)", file=sys.stderr)
    print(f"{100.0 * eer:.4g}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
