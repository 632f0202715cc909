#!/usr/bin/env python3
"""Benchmark of the classical clustering paths that are too slow for the test suite at scale.

  ahc_ward / ahc_average   sslsv.cluster.classical.AgglomerativeClusteringKNN with a 10-NN graph: the
                           k-NN graph, the component linking and scikit-learn's merge loop, timed apart
  hdbscan                  the HDBSCAN pipeline (sslsv.cluster.hdbscan_pipeline) with 11122-point
                           partial sets: cost per partial set (a dense cosine-distance matrix each)

Data: ``--speakers`` Gaussian blobs (make_blobs, std ``--std``) in ``--dim`` dimensions, L2-normalised,
``--n`` points; the Hungarian ACC against the blob labels is printed as a check that the run clustered.

  . path.sh && python bench/bench_cluster_classical.py [--n 60000] [--dim 40] [--speakers 300]
                                                        [--cases ahc_ward ahc_average hdbscan]
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "pyscripts"))

CASES = ["ahc_ward", "ahc_average", "hdbscan"]


def acc(y: np.ndarray, c: np.ndarray) -> float:
    from scipy.optimize import linear_sum_assignment
    _, ci = np.unique(c, return_inverse=True)
    w = np.zeros((ci.max() + 1, y.max() + 1))
    np.add.at(w, (ci, y), 1)
    r, k = linear_sum_assignment(w, maximize=True)
    return float(w[r, k].sum() / len(y))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--n", type=int, default=60000)
    p.add_argument("--dim", type=int, default=40)
    p.add_argument("--speakers", type=int, default=300)
    p.add_argument("--std", type=float, default=3.0)
    p.add_argument("--neighbors", type=int, default=10)
    p.add_argument("--cases", nargs="+", choices=CASES, default=CASES)
    a = p.parse_args()

    from scipy.sparse.csgraph import connected_components
    from sklearn.cluster import AgglomerativeClustering
    from sklearn.datasets import make_blobs
    from sslsv.cluster.classical import knn_connectivity, link_components
    from sslsv.cluster.hdbscan_pipeline import HDBSCANPipeline

    X, y = make_blobs(n_samples=a.n, centers=a.speakers, n_features=a.dim, cluster_std=a.std, random_state=0)
    X = (X / np.linalg.norm(X, axis=1, keepdims=True)).astype(np.float32)
    print(f"# {platform.processor() or platform.machine()}, {os.cpu_count()} cores; N={a.n} d={a.dim} "
          f"speakers={a.speakers} std={a.std}")
    graph = None
    for case in a.cases:
        if case.startswith("ahc"):
            if graph is None:
                t = time.perf_counter()
                knn = knn_connectivity(X, a.neighbors)
                t_knn = time.perf_counter() - t
                t = time.perf_counter()
                graph, n_comp = link_components(X, knn)
                t_link = time.perf_counter() - t
                assert connected_components(graph, directed=False)[0] == 1
                print(f"knn graph (k={a.neighbors})  {t_knn:7.1f} s   components {n_comp}, "
                      f"joined in {t_link:.2f} s by {(graph - knn).nnz // 2} edges")
            link = case.split("_")[1]
            metric = "cosine" if link == "average" else "euclidean"
            t = time.perf_counter()
            lab = AgglomerativeClustering(n_clusters=a.speakers, linkage=link, metric=metric,
                                          connectivity=graph).fit_predict(X)
            print(f"{case:<22} {time.perf_counter() - t:7.1f} s   ACC {acc(y, lab):.4f}")
        else:
            t = time.perf_counter()
            est = HDBSCANPipeline().fit(X)
            dt = time.perf_counter() - t
            print(f"{case:<22} {dt:7.1f} s   ({est.n_partial_sets_} partial sets, "
                  f"{dt / est.n_partial_sets_:.1f} s each incl. merging)   clusters {est.n_clusters_}, "
                  f"ACC {acc(y, est.labels_):.4f}")
            for phase, k, noise in est.history_:
                print(f"    {phase:<20} {k:6d} clusters {noise:6d} noise")
    print(f"peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB")


if __name__ == "__main__":
    main()
