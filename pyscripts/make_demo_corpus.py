#!/usr/bin/env python3
"""Synthesise the embedded demo corpus and write data/<name>_train, data/<name>_test (+ trials).
See sslsv.corpora.demo; usually run through local/make_demo_corpus.sh."""
import argparse
import sys

from sslsv.corpora.demo import build_demo_corpus
from sslsv.logs import setup
from sslsv.tables import DataError


def main() -> int:
    setup(stream=sys.stdout)   # progress on stdout, as local/make_demo_corpus.sh shows it
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--num-train-spk", type=int, default=48)
    ap.add_argument("--num-test-spk", type=int, default=12)
    ap.add_argument("--utts-per-spk", type=int, default=16)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--nj", type=int, default=0, help="parallel jobs (0: all cores)")
    ap.add_argument("--name", default="demo", help="data dirs <name>_train, <name>_test [demo]")
    ap.add_argument("audio_dir", help="where the WAV files (and the done-stamp) go")
    ap.add_argument("data_root", help="where <name>_train/ and <name>_test/ are written")
    a = ap.parse_args()
    try:
        build_demo_corpus(a.audio_dir, a.data_root, a.num_train_spk, a.num_test_spk, a.utts_per_spk,
                          a.seed, a.nj or None, name=a.name)
    except DataError as e:
        print(f"make_demo_corpus.py: error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
