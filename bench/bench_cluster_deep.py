#!/usr/bin/env python3
"""Benchmark of the deep clustering estimator (IMSAT / CIMC / CAMSAT) on synthetic i-vectors.

Measures, at a stated size (N vectors of dimension d, C clusters, hidden widths S-S, batch B), for each
method: the one-off k-th neighbour distance computation of VAT, then the wall time of each training
epoch (steady state: the mean over epochs after the first), vectors per second, and peak memory (process
RSS; on CUDA also torch's peak allocated). CAMSAT gets two i-vector-space views per batch, as in the
recipe when no augmented-audio i-vectors exist. The paper's setting is N = 1.09 M, d = 400, C = 10,000,
S = 1200 (IMSAT's default; the CIMC paper states S = 20,800), B = 10,240, 150 epochs.

Usage: python bench/bench_cluster_deep.py [--n 100000] [--dim 400] [--clusters 5000] [--hidden 1200-1200]
           [--batch 10240] [--epochs 3] [--methods cimc,camsat] [--device cpu|cuda]
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "pyscripts"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import torch  # noqa: E402
from benchlib import machine, rss_mib  # noqa: E402
from sslsv.cluster import build, method_config  # noqa: E402
from sslsv.cluster.deep.knn import kth_neighbor_distance  # noqa: E402


def synthetic_ivectors(n: int, d: int, speakers: int, seed: int = 0) -> np.ndarray:
    """Unit-norm vectors around ``speakers`` random directions with VoxCeleb-like imbalanced counts."""
    rng = np.random.default_rng(seed)
    sizes = rng.lognormal(0, 0.6, speakers)
    y = rng.choice(speakers, size=n, p=sizes / sizes.sum())
    centres = rng.standard_normal((speakers, d)).astype(np.float32)
    x = centres[y] + 1.2 * rng.standard_normal((n, d)).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    return x


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=100_000)
    ap.add_argument("--dim", type=int, default=400)
    ap.add_argument("--clusters", type=int, default=5000)
    ap.add_argument("--speakers", type=int, default=None, help="true speakers of the data [clusters]")
    ap.add_argument("--hidden", default="1200-1200")
    ap.add_argument("--batch", type=int, default=10240)
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--methods", default="cimc,camsat")
    ap.add_argument("--device", default="cpu")
    a = ap.parse_args()

    print(f"machine: {machine()}; device {a.device}"
          + (f" ({torch.cuda.get_device_name()})" if a.device.startswith("cuda") else ""))
    print(f"size: N={a.n} d={a.dim} C={a.clusters} hidden={a.hidden} batch={a.batch} epochs={a.epochs}")
    x = synthetic_ivectors(a.n, a.dim, a.speakers or a.clusters)
    t0 = time.perf_counter()
    kth_neighbor_distance(x, k=10, device=a.device)
    knn_s = time.perf_counter() - t0
    print(f"knn (10th neighbour, exact, chunked): {knn_s:.1f} s ({a.n / knn_s:,.0f} vectors/s), "
          f"peak RSS {rss_mib():,.0f} MiB")
    for m in a.methods.split(","):
        est, _ = build(method_config(m), [f"hidden={a.hidden}", f"batch_size={a.batch}", f"epochs={a.epochs}",
                                          f"device={a.device}", "verbose=false", "vat_k=10"],
                       n_clusters=a.clusters)
        if a.device.startswith("cuda"):
            torch.cuda.reset_peak_memory_stats()
        t0 = time.perf_counter()
        est.fit(x)
        total = time.perf_counter() - t0
        secs = [r["seconds"] for r in est.curve_]
        steady = float(np.mean(secs[1:])) if len(secs) > 1 else secs[0]
        gpu = (f", GPU peak {torch.cuda.max_memory_allocated() / 2**20:,.0f} MiB"
               if a.device.startswith("cuda") else "")
        print(f"{m}: epoch {steady:.2f} s ({a.n / steady:,.0f} vectors/s; first epoch {secs[0]:.2f} s), "
              f"fit {total:.1f} s incl. knn, peak RSS {rss_mib():,.0f} MiB{gpu}; "
              f"150 epochs ≈ {150 * steady / 3600:.2f} h")
    return 0


if __name__ == "__main__":
    sys.exit(main())
