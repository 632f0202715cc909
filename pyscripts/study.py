#!/usr/bin/env python3
"""The cells of a study grid (conf/study/*.yaml) as local/run_study.sh runs them: one line per cell,
``<cell-id> <run.sh options of stages 6-9, shell-quoted>``. The file is checked first (unknown keys,
methods without a conf/cluster/*.yaml, unknown heads or regularisers are errors naming file and grid).

    study.py --num-speakers 48 conf/study/demo.yaml
"""
from __future__ import annotations

import argparse
import sys

from sslsv.study import format_plan, load_study
from sslsv.tables import DataError


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--num-speakers", type=int, required=True, help="training speakers (C = multiplier x N)")
    p.add_argument("--conf-dir", default="conf/cluster", help="where the clustering methods' YAML files are")
    p.add_argument("study")
    a = p.parse_args(argv)
    try:
        study = load_study(a.study, a.conf_dir)
    except DataError as e:
        print(f"study.py: {e}", file=sys.stderr)
        return 1
    print("\n".join(format_plan(study, a.num_speakers)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
