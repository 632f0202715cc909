#!/usr/bin/env python3
"""Naive clustering baseline on a data dir: k-means (k = #speakers, 10 restarts, seed 0) on standardised
per-utterance mean+std of Kaldi MFCCs (feats.scp + vad.scp voiced frames when present, else computed
from wav.scp); prints NMI, ARI, purity and Hungarian-matched accuracy against utt2spk.

Usage: local/mfcc_kmeans_baseline.py [--seed 0] [--json] <data-dir>"""
import argparse
import json
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "pyscripts"))

from sslsv.mfcc_baseline import kmeans_baseline  # noqa: E402
from sslsv.tables import DataError  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seed", type=int, default=0, help="k-means seed")
    ap.add_argument("--json", action="store_true", help="print the figures as one JSON object")
    ap.add_argument("data_dir")
    a = ap.parse_args()
    try:
        r = kmeans_baseline(a.data_dir, a.seed)
    except DataError as e:
        print(f"mfcc_kmeans_baseline.py: error: {e}", file=sys.stderr)
        return 1
    if a.json:
        print(json.dumps(r, sort_keys=True))
    else:
        print(f"{a.data_dir}: {r['num_utts']} utterances, {r['num_speakers']} speakers, "
              f"MFCC mean+std k-means: NMI {r['nmi']:.3f}  ARI {r['ari']:.3f}  "
              f"purity {100 * r['purity']:.1f}%  accuracy {100 * r['accuracy']:.1f}%")
    return 0


if __name__ == "__main__":
    sys.exit(main())
