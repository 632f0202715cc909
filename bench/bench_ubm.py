#!/usr/bin/env python3
"""Stage-3 UBM throughput: frames/s and peak memory of

  diag      diagonal log-likelihoods (one GEMM) + gselect top-30
  full-K    full-covariance log-likelihoods of the top-20 (dense and grouped variants)
  post      UbmPosteriors (diag gselect 20 → full loglik → softmax → prune 0.025), the extractor's input
  em-diag   one diagonal EM iteration (E-step with gselect 30 + MleDiagGmmUpdate)
  em-full   one full-covariance EM iteration (E-step with gselect 20 + float64 C×D×D stats + update)

on random data of the stated size (frames × D × C). Each case runs in a fresh process so its peak RSS
(CPU) or peak allocated memory (GPU) is its own.

  . path.sh && python bench/bench_ubm.py [--frames 200000] [--dim 72] [--gauss 256 2048] [--device cpu]
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import resource
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "pyscripts"))

CASES = ["diag", "full-K-dense", "full-K-grouped", "post", "em-diag", "em-full"]


def model(c: int, d: int, seed: int = 0):
    import numpy as np
    from sslsv.ivector.gmm import FullGmm
    rng = np.random.default_rng(seed)
    a = rng.standard_normal((c, d, d)) * (0.3 / np.sqrt(d))
    cov = a @ a.transpose(0, 2, 1) + np.eye(d) * 0.5
    w = rng.random(c) + 0.5
    return FullGmm(w / w.sum(), rng.standard_normal((c, d)), cov)


def run_case(case: str, frames: int, d: int, c: int, device: str, chunk: int, q) -> None:
    import torch
    from sslsv.device import resolve_device
    from sslsv.ivector.gmm import (
        DiagAccumulator,
        DiagLoglik,
        FullAccumulator,
        FullLoglik,
        gselect,
        mle_diag_update,
        mle_full_update,
    )
    from sslsv.ivector.posteriors import UbmPosteriors
    dev = resolve_device(device)
    g = model(c, d)
    gd = g.to_diag()
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(frames, d, generator=gen).to(dev)

    def sync():
        if dev.type == "cuda":
            torch.cuda.synchronize()

    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    t0 = time.perf_counter()
    if case == "diag":
        ev = DiagLoglik(gd, dev)
        for a in range(0, frames, chunk):
            gselect(ev(x[a:a + chunk]), 30)
    elif case.startswith("full-K"):
        ev, dl = FullLoglik(g, dev, restricted=case.split("-")[-1]), DiagLoglik(gd, dev)
        for a in range(0, frames, chunk):
            xc = x[a:a + chunk]
            ev(xc, gselect(dl(xc), 20))
    elif case == "post":
        pp = UbmPosteriors(g, 20, 0.025, device=dev)
        for a in range(0, frames, chunk):
            pp(x[a:a + chunk])
    elif case == "em-diag":
        acc = DiagAccumulator(gd, gd, 30, dev)
        for a in range(0, frames, chunk):
            acc.add(x[a:a + chunk])
        mle_diag_update(gd, acc.stats(), remove_low_count_gaussians=False)
    elif case == "em-full":
        acc = FullAccumulator(g, gd, 20, dev)
        for a in range(0, frames, chunk):
            acc.add(x[a:a + chunk])
        mle_full_update(g, acc.stats())
    sync()
    dt = time.perf_counter() - t0
    peak = (torch.cuda.max_memory_allocated() / 2**20 if dev.type == "cuda"
            else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
    q.put((dt, peak, str(dev), torch.get_num_threads()))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--frames", type=int, default=200000)
    ap.add_argument("--frames-large", type=int, default=20000,
                    help="frames for the C >= 1024 cases (throughput is per frame, so it extrapolates)")
    ap.add_argument("--dim", type=int, default=72)
    ap.add_argument("--gauss", type=int, nargs="+", default=[256, 2048])
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--chunk", type=int, default=8192)
    ap.add_argument("--cases", nargs="+", default=CASES, choices=CASES)
    a = ap.parse_args()
    ctx = mp.get_context("spawn")
    print("| case | C | frames | D | device | threads | wall (s) | frames/s | peak mem (MiB) |")
    print("|---|---|---|---|---|---|---|---|---|")
    for c in a.gauss:
        n = a.frames if c < 1024 else a.frames_large
        for case in a.cases:
            q = ctx.Queue()
            p = ctx.Process(target=run_case, args=(case, n, a.dim, c, a.device, a.chunk, q))
            p.start()
            dt, peak, dev, th = q.get()
            p.join()
            print(f"| {case} | {c} | {n} | {a.dim} | {dev} | {th} | {dt:.2f} | {n / dt:,.0f} | {peak:.0f} |",
                  flush=True)
    d = a.dim
    for c in a.gauss:
        print(f"full-covariance accumulators C x D x D float64 at C={c}, D={d}: "
              f"{c * d * d * 8 / 1e6:.1f} MB (packed D(D+1)/2 during accumulation: "
              f"{c * d * (d + 1) // 2 * 8 / 1e6:.1f} MB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
