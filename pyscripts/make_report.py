#!/usr/bin/env python3
"""Stage 10: RESULTS.md and the figures (correlation heatmaps, clustering curves) of one exp/<name>, from
the result files of stages 5-9 alone. A partial exp/ is fine: what is missing is listed at the top.

    make_report.py [--corpus NAME] [--study conf/study/demo.yaml] [--num-speakers N] <exp-dir> <out-dir>
"""
from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path

from sslsv.report import Report, collect
from sslsv.study import load_study
from sslsv.tables import DataError


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--corpus", help="corpus name for the title [the exp dir's name]")
    p.add_argument("--study", help="study grid: its cells not yet run are listed as missing")
    p.add_argument("--num-speakers", type=int,
                   help="training speakers, to place the study's C (default: from the clustering runs)")
    p.add_argument("--head", help="head of the reference system of Table I and the heatmaps [most common]")
    p.add_argument("--config", help="embedding config (stem) of the reference system [most common]")
    p.add_argument("--command", help="the command to print as the one that made the report [this one]")
    p.add_argument("exp")
    p.add_argument("out")
    a = p.parse_args(argv)
    try:
        study = load_study(a.study) if a.study else None
    except DataError as e:
        print(f"make_report.py: {e}", file=sys.stderr)
        return 1
    res = collect(a.exp)
    command = a.command or shlex.join(["make_report.py", *(argv if argv is not None else sys.argv[1:])])
    rep = Report(res, Path(a.out), a.corpus or Path(a.exp).name, command, study, a.head, a.config,
                 a.num_speakers)
    rep.build()
    n_scored = sum(s.cosine is not None for s in res.systems)
    print(f"make_report.py: wrote {a.out}/RESULTS.md ({len(res.clusters)} clustering runs, {n_scored} scored "
          f"systems, {len(res.baselines)} baselines) and {len(rep.figures)} figures"
          + (f"; {len(res.notes)} things missing, listed at the top" if res.notes else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
