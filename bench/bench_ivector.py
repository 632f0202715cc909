#!/usr/bin/env python3
"""Benchmark of the i-vector extractor (stages 4-5): frame posteriors, Baum-Welch statistics + batched
E-step (utterances/s), one training iteration, extraction real-time factor and peak memory.

Part 1 (real features, small model): the first --num-utts utterances of --data with a C-Gaussian full UBM
made from the frames (means = random frames, covariances = the global covariance; only timing matters),
S-dimensional extractor.  Part 2 (synthetic, VoxCeleb size): --big-utts utterances of --big-frames frames,
D = 72, 3 non-zero posteriors per frame, C = --big-C, S = --big-S: E-step + accumulation per utterance,
and the M-step timed on --big-mstep-gauss Gaussians and scaled to C. Prints a VoxCeleb2 extrapolation
(1.09 M utterances; per-utterance cost, frame count matters little at this size).

  python bench/bench_ivector.py [--device cpu] [--data data/demo_train] [--num-utts 200] [--C 256] [--S 100]
                                [--big-C 2048] [--big-S 400] [--big-utts 128] [--skip-big]
"""

from __future__ import annotations

import argparse
import resource
import time

import numpy as np
import torch
from sslsv.device import resolve_device
from sslsv.ivector.extractor import (
    IvectorExtractor,
    IvectorStats,
    apply_generalised_floor,
    solve_quadratic_matrix,
)
from sslsv.ivector.frames import FrameOptions, iter_frames
from sslsv.ivector.gmm import FullGmm
from sslsv.ivector.posteriors import UbmPosteriors
from sslsv.ivector.stats import batch_stats, sparsify
from sslsv.tables import read_map


def peak_gb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6


def sync(dev: torch.device) -> None:
    if dev.type == "cuda":
        torch.cuda.synchronize()


def part1(a, dev: torch.device) -> None:
    utts, frames = [], []
    for u, x in iter_frames(a.data, FrameOptions()):
        utts.append(u)
        frames.append(x)
        if len(utts) == a.num_utts:
            break
    allx = np.concatenate(frames).astype(np.float64)
    rng = np.random.default_rng(0)
    D = allx.shape[1]
    cov = np.cov(allx.T) + 1e-3 * np.eye(D)
    ubm = FullGmm(np.full(a.C, 1.0 / a.C), allx[rng.choice(len(allx), a.C, replace=False)],
                  np.repeat(cov[None], a.C, 0))
    nfr = read_map(f"{a.data}/utt2num_frames")
    audio_s = sum(int(nfr[u]) for u in utts) * 0.01
    voiced = sum(len(x) for x in frames)
    print(f"## part 1: {len(utts)} utterances of {a.data}: {voiced} voiced frames "
          f"({audio_s:.0f} s of audio), D={D}, C={a.C}, S={a.S}, device {dev}")
    comp = UbmPosteriors(ubm, num_gselect=20, min_post=0.025, device=dev)
    t = time.time()
    posts = [sparsify(*comp(x)) for x in frames]
    sync(dev)
    tp = time.time() - t
    nnz = sum(len(p[0]) for p in posts)
    print(f"posteriors (gselect 20, full-cov, prune 0.025): {voiced / tp:,.0f} frames/s "
          f"({tp:.2f} s; {nnz / voiced:.2f} non-zero per frame)")
    ie = IvectorExtractor.init_from_ubm(ubm, a.S, seed=0, device=dev)
    t = time.time()
    for s in range(0, len(frames), a.batch):
        ie.estep(batch_stats(frames[s:s + a.batch], posts[s:s + a.batch], a.C, dev), auxf=False)
    sync(dev)
    te = time.time() - t
    print(f"stats + E-step (batch {a.batch}): {len(frames) / te:,.1f} utt/s ({te:.2f} s)")
    t = time.time()
    acc = IvectorStats.like(ie)
    for s in range(0, len(frames), a.batch):
        acc.accumulate(ie, batch_stats(frames[s:s + a.batch], posts[s:s + a.batch], a.C, dev,
                                       second_order=True))
    sync(dev)
    ta = time.time() - t
    t = time.time()
    new, info = acc.update(ie, gaussian_min_count=1.0)
    sync(dev)
    tu = time.time() - t
    print(f"training iteration: accumulate {ta:.2f} s ({len(frames) / ta:,.1f} utt/s) + M-step {tu:.2f} s; "
          f"auxf/frame {info.auxf_per_frame:.3f}")
    t = time.time()
    for s in range(0, len(frames), a.batch):
        st = batch_stats(frames[s:s + a.batch], [sparsify(*comp(x)) for x in frames[s:s + a.batch]], a.C, dev)
        new.extract(st)
    sync(dev)
    tx = time.time() - t
    print(f"extraction (posteriors + stats + point estimate): RTF {tx / audio_s:.5f} "
          f"({audio_s / tx:,.0f}x real time, {tx:.2f} s)")
    print(f"peak RSS so far: {peak_gb():.2f} GB")


def part2(a, dev: torch.device) -> None:
    C, D, S, T = a.big_C, 72, a.big_S, a.big_frames
    print(f"## part 2 (synthetic): {a.big_utts} utterances x {T} frames, D={D}, C={C}, S={S}, "
          f"3 posteriors/frame, device {dev}")
    rng = np.random.default_rng(0)
    frames = [rng.normal(size=(T, D)).astype(np.float32) for _ in range(a.big_utts)]
    posts = []
    for _ in range(a.big_utts):
        g = rng.integers(0, C, size=(T, 3))
        p = rng.dirichlet(np.ones(3), size=T).astype(np.float32)
        posts.append((np.repeat(np.arange(T), 3).astype(np.int32), g.reshape(-1).astype(np.int32),
                      p.reshape(-1)))
    gen = torch.Generator().manual_seed(0)
    M = torch.randn(C, D, S, generator=gen, dtype=torch.float64) * 0.05
    ie = IvectorExtractor(M, torch.eye(D, dtype=torch.float64).expand(C, D, D).clone(),
                          torch.full((C,), 1.0 / C, dtype=torch.float64), 100.0, dev)
    print(f"model: M {M.numel() * 8 / 1e9:.2f} GB, U packed {ie.U_packed.numel() * 8 / 1e9:.2f} GB; "
          f"peak RSS {peak_gb():.2f} GB")
    t = time.time()
    for s in range(0, a.big_utts, a.batch):
        ie.estep(batch_stats(frames[s:s + a.batch], posts[s:s + a.batch], C, dev), auxf=False)
    sync(dev)
    te = time.time() - t
    acc = IvectorStats.like(ie)
    size = sum(x.numel() for x in (acc.gamma, acc.Y, acc.R, acc.S2, acc.H)) * 8 / 1e9
    print(f"accumulators: {size:.2f} GB (float64, R and second order packed)")
    t = time.time()
    for s in range(0, a.big_utts, a.batch):
        acc.accumulate(ie, batch_stats(frames[s:s + a.batch], posts[s:s + a.batch], C, dev,
                                       second_order=True))
    sync(dev)
    ta = time.time() - t
    print(f"stats + E-step: {a.big_utts / te:.2f} utt/s; "
          f"stats + E-step + accumulation: {a.big_utts / ta:.2f} utt/s")
    G = min(a.big_mstep_gauss, C)
    R = torch.eye(S, dtype=torch.float64, device=dev).expand(G, S, S) * 50 + 0.1
    t = time.time()
    Mi, _ = solve_quadratic_matrix(R, acc.Y[:G], ie.Sigma_inv[:G], ie.M[:G])
    sig = torch.eye(D, dtype=torch.float64, device=dev).expand(G, D, D) * 2
    apply_generalised_floor(sig, torch.eye(D, dtype=torch.float64, device=dev))
    Mi @ R @ Mi.transpose(1, 2)
    sync(dev)
    tm = (time.time() - t) * C / G
    print(f"M-step (projections + covariances), timed on {G} Gaussians and scaled to {C}: {tm:.1f} s")
    # the per-utterance cost is dominated by γ@U_packed, the R update and the S×S solves, which do not
    # depend on the number of frames; the frame-level statistics are a small part at this size
    iter_s = 100_000 / (a.big_utts / ta) + tm
    print(f"extrapolation: one training iteration on 100k utterances ≈ {iter_s / 3600:.2f} h on this device; "
          f"extraction of VoxCeleb2 (1.09 M utterances) ≈ {1.09e6 / (a.big_utts / te) / 3600:.1f} h "
          "(stats + E-step; frame posteriors extra)")
    print(f"peak RSS: {peak_gb():.2f} GB")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--data", default="data/demo_train")
    ap.add_argument("--num-utts", type=int, default=200)
    ap.add_argument("--C", type=int, default=256)
    ap.add_argument("--S", type=int, default=100)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--big-C", type=int, default=2048)
    ap.add_argument("--big-S", type=int, default=400)
    ap.add_argument("--big-utts", type=int, default=128)
    ap.add_argument("--big-frames", type=int, default=300)
    ap.add_argument("--big-mstep-gauss", type=int, default=64)
    ap.add_argument("--skip-big", action="store_true")
    ap.add_argument("--skip-small", action="store_true")
    a = ap.parse_args()
    dev = resolve_device(a.device)
    torch.manual_seed(0)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    if not a.skip_small:
        part1(a, dev)
    if not a.skip_big:
        part2(a, dev)


if __name__ == "__main__":
    main()
