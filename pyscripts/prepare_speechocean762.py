#!/usr/bin/env python3
"""Prepare speechocean762 as Kaldi data dirs <data-root>/<name>_{train,test} plus test trials; see
sslsv.corpora.speechocean762 and local/prepare_speechocean762.sh."""
import argparse
import sys

from sslsv.corpora import speechocean762
from sslsv.tables import DataError


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("src", help="official layout (WAVE/ + train/ and/or test/ lists) or the FLAC copy")
    ap.add_argument("data_root")
    ap.add_argument("--num-test-spk", type=int, default=25, help="test speakers when only one half is given")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--use-pipes", choices=["true", "false"], default="false")
    ap.add_argument("--nj", type=int, default=1)
    ap.add_argument("--name", default=speechocean762.NAME)
    a = ap.parse_args(argv)
    try:
        line = speechocean762.prepare(a.src, a.data_root, a.num_test_spk, a.seed, a.use_pipes == "true",
                                      a.nj, a.name)
    except DataError as e:
        print(f"prepare_speechocean762.py: error: {e}", file=sys.stderr)
        return 1
    print(f"prepare_speechocean762.py: {line}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
