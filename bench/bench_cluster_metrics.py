#!/usr/bin/env python3
"""Benchmark of sslsv.cluster.metrics.clustering_metrics at VoxCeleb2 scale on synthetic data.

Data: ``--classes`` speakers with imbalanced sizes (log-uniform 100-1000 utterances, scaled so that they
sum to ``--n``), speaker ids as strings (``id00042``, as read from utt2spk); ``--dim``-dimensional
float32 vectors = speaker centre + noise, L2-normalised; ``--clusters`` predicted clusters, each owned
by a speaker (every speaker owns at least one when clusters >= classes), with 80 % of a speaker's
utterances in its own clusters and 20 % in random ones.

Prints the wall and CPU time (both cores' sum; the steadier figure on a shared machine) of each metric
computed alone (``names=[metric]``, so it includes the shared work: label encoding, contingency table,
passes over X) and of all eleven in one call, the metric values, the peak RSS after making the data and
at the end (ru_maxrss), and the machine.

Usage: python bench/bench_cluster_metrics.py [--n 1090000] [--dim 400] [--classes 6000] [--clusters 10000]
       (--n 100000 for a quick run)
"""
from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "pyscripts"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from benchlib import cpu_model, rss_mib  # noqa: E402
from sslsv.cluster.metrics import METRICS, clustering_metrics, format_metrics  # noqa: E402


def synthetic(n: int, dim: int, classes: int, clusters: int, seed: int = 0
              ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(speaker id strings, predicted cluster ids, L2-normalised float32 vectors)."""
    rng = np.random.default_rng(seed)
    raw = np.exp(rng.uniform(np.log(100), np.log(1000), classes))
    scaled = raw * n / raw.sum()
    sizes = np.floor(scaled).astype(np.int64)
    sizes[np.argsort(sizes - scaled)[: n - sizes.sum()]] += 1      # largest remainders: sum is n
    y = rng.permutation(np.repeat(np.arange(classes), sizes))
    if clusters >= classes:
        owner = np.concatenate([np.arange(classes),
                                rng.choice(classes, clusters - classes, p=sizes / sizes.sum())])
    else:
        owner = rng.integers(0, classes, clusters)
    by_owner = np.argsort(owner, kind="stable")
    count = np.bincount(owner, minlength=classes)
    first = np.concatenate([[0], np.cumsum(count)[:-1]])
    has = count[y] > 0                           # (fewer clusters than classes: some own none)
    slot = np.where(has, first[y] + (rng.random(n) * count[y]).astype(np.int64), 0)
    home = np.where(has, by_owner[slot], rng.integers(0, clusters, n))
    pred = np.where(rng.random(n) < 0.8, home, rng.integers(0, clusters, n))
    centres = rng.standard_normal((classes, dim), dtype=np.float32)
    X = np.empty((n, dim), dtype=np.float32)
    for s in range(0, n, 65536):
        block = centres[y[s:s + 65536]] + rng.standard_normal((len(y[s:s + 65536]), dim), dtype=np.float32)
        block /= np.linalg.norm(block, axis=1, keepdims=True)
        X[s:s + 65536] = block
    spk = np.char.add("id", np.char.zfill(y.astype(str), 5))
    return spk, pred, X


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=1_090_000)
    ap.add_argument("--dim", type=int, default=400)
    ap.add_argument("--classes", type=int, default=6000)
    ap.add_argument("--clusters", type=int, default=10000)
    ap.add_argument("--silhouette-sample", type=int, default=10000)
    a = ap.parse_args()

    print(f"machine: {cpu_model()}, {os.cpu_count()} cores, {platform.python_implementation()} "
          f"{platform.python_version()}, numpy {np.__version__}")
    t0 = time.perf_counter()
    spk, pred, X = synthetic(a.n, a.dim, a.classes, a.clusters)
    print(f"data: N={a.n} dim={a.dim} classes={a.classes} clusters={a.clusters} "
          f"(X {X.nbytes / 2**20:.0f} MiB float32), made in {time.perf_counter() - t0:.1f} s; "
          f"peak RSS {rss_mib():.0f} MiB")

    kw = dict(silhouette_sample=a.silhouette_sample, random_state=0)
    print(f"{'metric':<14}{'wall (s)':>10}{'cpu (s)':>10}   (each alone, then all in one call)")
    for m in [*METRICS, None]:
        t0, c0 = time.perf_counter(), time.process_time()
        res = clustering_metrics(pred, spk, X, names=None if m is None else [m], **kw)
        print(f"{m or 'all eleven':<14}{time.perf_counter() - t0:>10.2f}{time.process_time() - c0:>10.2f}")
    print(f"values: {format_metrics(res)}")
    print(f"peak RSS {rss_mib():.0f} MiB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
