#!/usr/bin/env python3
"""Prepare a speaker-per-folder corpus as Kaldi data dirs <data-root>/<name>_{train,test} plus test
trials; see sslsv.corpora.folder and local/prepare_dir_corpus.sh."""
import argparse
import sys

from sslsv.corpora import folder
from sslsv.tables import DataError


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("src", help="one sub-folder per speaker, audio files anywhere below it")
    ap.add_argument("data_root")
    ap.add_argument("name", nargs="?", default=folder.NAME)
    ap.add_argument("--num-test-spk", type=int, default=None)
    ap.add_argument("--test-fraction", type=float, default=None)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--ext", default=",".join(folder.DEFAULT_EXTS), help="comma-separated extensions")
    ap.add_argument("--use-pipes", choices=["true", "false"], default="false")
    ap.add_argument("--nj", type=int, default=1)
    a = ap.parse_args(argv)
    try:
        line = folder.prepare(a.src, a.data_root, a.name, a.num_test_spk, a.test_fraction, a.seed,
                              tuple(a.ext.split(",")), a.use_pipes == "true", a.nj)
    except DataError as e:
        print(f"prepare_dir_corpus.py: error: {e}", file=sys.stderr)
        return 1
    print(f"prepare_dir_corpus.py: {line}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
