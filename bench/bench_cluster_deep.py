#!/usr/bin/env python3
"""Benchmark of the deep clustering estimator (IMSAT / CIMC / CAMSAT) at a stated size.

Measures, for each method config (the project's step schedule, or the papers' setting with ``--paper``):
the one-off k-th neighbour distance computation of VAT, then the training speed over ``--steps``
optimiser steps (steps/s and vectors/s, the first epoch excluded where there are several), the time the
config's full schedule takes at that speed, and peak memory (process RSS; on CUDA also torch's peak
allocated). Data: the VoxCeleb2-shaped simulator (``--sim-model``, a model fitted by
local/simulate_ivectors.py) or, without one, synthetic unit-norm vectors around random directions.
CAMSAT gets two views per batch (the simulator's augmented copies, or i-vector-space views).

Usage: python bench/bench_cluster_deep.py [--n 100000] [--clusters 5000] [--sim-model model.npz]
           [--utts-per-speaker 20] [--steps 200] [--methods imsat,cimc,camsat] [--paper] [--device cpu]
The papers' own size: --n 1092009 --dim 400 --clusters 10000 --paper (a GPU job).
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
    ap.add_argument("--dim", type=int, default=400, help="dimension of synthetic data [400]")
    ap.add_argument("--clusters", type=int, default=5000)
    ap.add_argument("--sim-model", help="simulator model (.npz); data: N / utts-per-speaker speakers")
    ap.add_argument("--utts-per-speaker", type=float, default=20.0)
    ap.add_argument("--steps", type=int, default=200, help="optimiser steps timed [200]")
    ap.add_argument("--methods", default="imsat,cimc,camsat")
    ap.add_argument("--paper", action="store_true", help="the <method>_paper configs")
    ap.add_argument("--set", action="append", default=[], help="extra key=value for every method")
    ap.add_argument("--device", default="cpu")
    a = ap.parse_args()

    print(f"machine: {machine()}; device {a.device}"
          + (f" ({torch.cuda.get_device_name()})" if a.device.startswith("cuda") else ""))
    views = None
    if a.sim_model:
        from sslsv.simulate import SimModel, sample

        spk = max(2, round(a.n / a.utts_per_speaker))
        t0 = time.perf_counter()
        corpus = sample(SimModel.load(a.sim_model), num_speakers=spk, utts_per_speaker=a.utts_per_speaker,
                        sessions_per_speaker=max(1.0, a.utts_per_speaker / 7.5), seed=0)
        x = corpus.vectors / np.linalg.norm(corpus.vectors, axis=1, keepdims=True)
        if corpus.views is not None:
            views = corpus.views / np.linalg.norm(corpus.views, axis=2, keepdims=True)
        print(f"data: simulator {a.sim_model}, {spk} speakers, {len(x)} vectors of dim {x.shape[1]} "
              f"({time.perf_counter() - t0:.1f} s)")
    else:
        x = synthetic_ivectors(a.n, a.dim, a.clusters)
        print(f"data: synthetic, {len(x)} vectors of dim {x.shape[1]}")
    n = len(x)
    t0 = time.perf_counter()
    kth_neighbor_distance(x, k=10, device=a.device)
    knn_s = time.perf_counter() - t0
    print(f"knn (10th neighbour, exact, chunked): {knn_s:.1f} s ({n / knn_s:,.0f} vectors/s), "
          f"peak RSS {rss_mib():,.0f} MiB")
    for m in a.methods.split(","):
        name = f"{m}_paper" if a.paper else m
        est, _ = build(method_config(name), [f"device={a.device}", "verbose=false", *a.set],
                       n_clusters=a.clusters)
        full = est.schedule(n)
        est.set_params(steps=a.steps)
        sched = est.schedule(n)
        if a.device.startswith("cuda"):
            torch.cuda.reset_peak_memory_stats()
        t0 = time.perf_counter()
        est.fit(x, views=views)
        total = time.perf_counter() - t0
        first = 1 if len(est.curve_) > 1 else 0      # the first epoch includes warm-up
        steps = est.curve_[-1]["step"] - (est.curve_[0]["step"] if first else 0)
        secs = sum(r["seconds"] for r in est.curve_[first:])
        rate = steps / secs
        gpu = (f", GPU peak {torch.cuda.max_memory_allocated() / 2**20:,.0f} MiB"
               if a.device.startswith("cuda") else "")
        print(f"{name}: head {est.hidden_}, batch {sched.batch_size}: {rate:.2f} steps/s "
              f"({rate * sched.batch_size:,.0f} vectors/s), {a.steps} steps in {total:.1f} s incl. knn; "
              f"full schedule {full.steps} steps ({full.epochs} epochs) ≈ {full.steps / rate / 60:.1f} min; "
              f"peak RSS {rss_mib():,.0f} MiB{gpu}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
