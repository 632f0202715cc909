#!/usr/bin/env python3
"""Benchmark of stage 10 (sslsv.report) on a synthetic exp/ tree the size of the papers' study.

Writes --sets pseudo-label sets (half deep, each with a --epochs-long curve.tsv), one AAM system per set,
the six heads on --margin-sets of them and i-mix / l-mix on --reg-sets, then times reading the tree
(collect) and building RESULTS.md with every figure, and prints wall time, systems per second and the
peak memory of the process.

Usage: python bench/bench_report.py [--sets 122] [--margin-sets 20] [--reg-sets 40] [--epochs 150]
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "pyscripts"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from benchlib import machine, rss_mib  # noqa: E402
from sslsv.cluster.metrics import METRICS  # noqa: E402
from sslsv.report import Report, collect  # noqa: E402

HEADS = ("softmax", "am", "cosface", "aam", "ocsoftmax", "adaface")


def make_tree(exp: Path, sets: int, margin_sets: int, reg_sets: int, epochs: int, rng: np.random.Generator
              ) -> int:
    (exp.parent / "utt2spk").write_text("".join(f"u{i} s{i % 50}\n" for i in range(500)))
    n_sys = 0

    def system(tag: str, head: str, mix: str) -> None:
        nonlocal n_sys
        d = exp / "embed" / (f"{tag}_ecapa_c512_{head}" + ("" if mix == "none" else f"_{mix}1")) / "scores"
        d.mkdir(parents=True)
        (d.parent / "config.yaml").write_text(f"head:\n  name: {head}\nmixup:\n  kind: {mix}\n  alpha: 1.0\n")
        r = {k: {"eer": float(rng.uniform(2, 40)), "min_dcf_0.01": float(rng.uniform(0.2, 1)),
                 "num_trials": 37720} for k in ("cosine", "asnorm")}
        (d / "result.json").write_text(json.dumps({"utt2spk": f"data/vox_train_pl_{tag}/utt2spk",
                                                   "trials": "data/vox1_o/trials", **r}))
        n_sys += 1

    for i in range(sets):
        deep = i % 2 == 1
        tag = f"{'camsat' if deep else 'kmeans'}{i}_c{5994 * (1 + i % 3)}"
        d = exp / "cluster" / tag
        d.mkdir(parents=True)
        m = {k: float(rng.uniform(0, 1)) for k in METRICS}
        m["num_clusters"] = 5994
        (d / "metrics.json").write_text(json.dumps({
            "method": tag.split("_")[0], "estimator": "deep_im" if deep else "kmeans",
            "input_norm": "l2" if i % 4 < 2 else "standard", "n_clusters_requested": 5994 * (1 + i % 3),
            "num_clusters_found": 5994, "metrics": m, "eval_labels": str(exp.parent / "utt2spk")}))
        if deep:
            e = np.arange(1, epochs + 1)
            cols = {"epoch": e, "num_clusters": np.minimum(5994, 2 + 60 * e)}
            cols.update({k: 1 - np.exp(-e / 30) * rng.uniform(0.5, 1) for k in
                         ("acc", "ami", "nmi", "completeness", "homogeneity", "fmi", "purity")})
            rows = ["\t".join(cols)] + ["\t".join(f"{cols[k][j]:g}" for k in cols) for j in range(epochs)]
            (d / "curve.tsv").write_text("\n".join(rows) + "\n")
        system(tag, "aam", "none")
        if i < margin_sets:
            for h in HEADS:
                if h != "aam":
                    system(tag, h, "none")
        if i < reg_sets:
            for mix in ("imix", "lmix"):
                system(tag, "aam", mix)
    return n_sys


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sets", type=int, default=122)
    ap.add_argument("--margin-sets", type=int, default=20)
    ap.add_argument("--reg-sets", type=int, default=40)
    ap.add_argument("--epochs", type=int, default=150)
    a = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        exp = Path(tmp) / "exp"
        n_sys = make_tree(exp, a.sets, a.margin_sets, a.reg_sets, a.epochs, np.random.default_rng(0))
        t0 = time.perf_counter()
        res = collect(exp)
        t1 = time.perf_counter()
        rep = Report(res, Path(tmp) / "report", "synthetic", "bench_report.py")
        rep.build()
        t2 = time.perf_counter()
        size = sum(f.stat().st_size for f in (Path(tmp) / "report").iterdir())
    print(f"machine: {machine()}")
    print(f"tree: {a.sets} pseudo-label sets ({a.sets // 2} with {a.epochs}-epoch curves), {n_sys} systems")
    print(f"collect: {t1 - t0:.2f} s ({n_sys / (t1 - t0):.0f} systems/s)")
    print(f"RESULTS.md + {len(rep.figures)} figures: {t2 - t1:.2f} s; report {size / 2**20:.1f} MiB")
    print(f"total {t2 - t0:.2f} s, peak RSS {rss_mib():.0f} MiB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
