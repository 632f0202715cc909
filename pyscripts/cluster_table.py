#!/usr/bin/env python3
"""Markdown table of the clustering metrics of every run under a directory (``*/metrics.json`` as written
by steps/cluster.sh): one row per run, sorted by C then method, with the eleven metrics, the fit time and
where the views came from.

  cluster_table.py [--title TEXT] [--clusters C] <cluster-root>
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from sslsv.cluster.metrics import METRICS
from sslsv.report.document import METRIC_HEAD as HEAD
from sslsv.report.document import fmt


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--title")
    p.add_argument("--clusters", type=int,
                   help="only runs asked for C clusters (and those finding C themselves)")
    p.add_argument("root")
    a = p.parse_args(argv)
    runs = []
    for f in sorted(Path(a.root).glob("*/metrics.json")):
        r = json.loads(f.read_text())
        runs.append((r.get("n_clusters_requested") or 0, r["method"], f.parent.name, r))
    if a.clusters:
        runs = [r for r in runs if r[0] in (0, a.clusters)]
    runs.sort(key=lambda t: (t[0], t[1]))
    out = []
    if a.title:
        out += [f"### {a.title}", ""]
    cols = ["run", "C", *(HEAD[m] for m in METRICS), "fit (s)", "views"]
    out += ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for c, _, tag, r in runs:
        m = r["metrics"]
        fit = f"{r['fit_seconds']:.1f}" if r.get("fit_seconds") is not None else "–"
        cells = [tag, str(c or "auto"), *(fmt(m.get(k)) for k in METRICS), fit, r.get("views_used") or "–"]
        out.append("| " + " | ".join(cells) + " |")
    if runs:
        r0 = runs[0][3]
        out += ["", f"Inputs: {r0['vectors']} ({r0['num_vectors']} vectors, dim {r0['dim']}, "
                f"{r0['input_norm']} normalised); metrics against {r0.get('eval_labels')} (evaluation only). "
                f"Silhouette, CHS and DBS on the normalised inputs. Machine: {r0.get('machine')}; "
                f"dates {min(r[3]['date'] for r in runs)[:10]} to {max(r[3]['date'] for r in runs)[:10]}."]
    print("\n".join(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
