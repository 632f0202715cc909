#!/usr/bin/env python3
"""Write a pseudo-label data dir: <src-data> relabelled by the clusters of <labels> (the worker of
steps/make_pseudo_label_dir.sh; see sslsv.pseudo_labels).

  make_pseudo_label_dir.py [--min-cluster-size N] <src-data-dir> <labels> <out-data-dir>
"""
from __future__ import annotations

import argparse
import sys

from sslsv.pseudo_labels import make_pseudo_label_dir
from sslsv.tables import DataError


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--min-cluster-size", type=int, default=2,
                   help="clusters with fewer utterances are dropped")
    p.add_argument("src")
    p.add_argument("labels")
    p.add_argument("dest")
    a = p.parse_args(argv)
    if a.min_cluster_size < 1:
        p.error("--min-cluster-size must be at least 1")
    r = make_pseudo_label_dir(a.src, a.labels, a.dest, a.min_cluster_size)
    print(f"make_pseudo_label_dir.py: {a.dest}: {r.utterances} utterances in {r.speakers} pseudo speakers; "
          f"dropped {r.dropped_utterances} utterances of {r.dropped_clusters} clusters smaller than "
          f"{a.min_cluster_size}, {r.unassigned} unassigned, {r.missing} without a label")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except DataError as e:
        print(f"make_pseudo_label_dir.py: ERROR: {e}", file=sys.stderr)
        sys.exit(1)
