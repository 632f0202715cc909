#!/usr/bin/env python3
"""Benchmark of the i-vector simulator (sslsv.simulate) at VoxCeleb2-dev's full size: sampling
5,994 speakers x 182.2 utterances, 24.3 sessions (1,092,107 utterances, 145,654 sessions; VoxCeleb2 itself
has 1,092,009 and 145,569) of ``--dim``-dimensional vectors, with ``--views`` augmented copies each, then
writing them as stage 6 reads them in the npy format (``vectors.npy`` + ``vectors.keys``, ``aug/``,
utt2spk, spk2utt, utt2sess).

Model: ``--model`` (a fitted ``.npz``, e.g. exp/speechocean762/sim/model.npz), or else one fitted to a
synthetic speechocean762-sized set (100 speakers x 20 utterances, random B and W in ``--dim`` dimensions,
with ``--views`` random shift types), as ``simulate_ivectors.py fit`` would fit the real one.

Prints, per phase (fit, sample, write), wall and CPU time, the sampling throughput (utterances/s, counting
the clean vectors; views included in the time), the bytes written, the peak RSS, and the machine.

  . path.sh && python bench/bench_simulate.py [--scale 1.0] [--dim 100] [--views 3] [--model M.npz]
                                              [--out DIR] [--keep]
"""
from __future__ import annotations

import argparse
import os
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "pyscripts"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from benchlib import cpu_model, rss_mib  # noqa: E402
from sslsv.simulate import SimModel, fit_model, sample, vox2_shape, write_corpus  # noqa: E402


def synthetic_model(dim: int, views: int, seed: int = 0) -> SimModel:
    """A model fitted to 100 speakers x 20 utterances drawn with random B (tr ≈ dim/6) and W (tr ≈ dim)."""
    rng = np.random.default_rng(seed)

    def cov(scale: float) -> np.ndarray:
        a = rng.standard_normal((dim, dim))
        return a @ a.T / dim**2 * scale * dim

    B, W = cov(1 / 6), cov(1.0)
    spk = np.repeat(np.arange(100), 20)
    X = rng.multivariate_normal(np.zeros(dim), B, 100)[spk] + rng.multivariate_normal(np.zeros(dim), W, 2000)
    types = sorted(["babble", "noise", "reverb", "music", "speed"][:views] if views <= 5
                   else [f"aug{i}" for i in range(views)])
    V = None
    if types:
        V = np.stack([X + rng.multivariate_normal(rng.standard_normal(dim) * 0.1, cov(0.3), 2000)
                      for _ in types])
    return fit_model(X, spk, V, types, source="synthetic")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--scale", type=float, default=1.0, help="VoxCeleb2's speakers times this")
    ap.add_argument("--dim", type=int, default=100)
    ap.add_argument("--views", type=int, default=3, help="augmentation types of the synthetic model")
    ap.add_argument("--model", help="a fitted model (.npz) instead of the synthetic one")
    ap.add_argument("--out", help="output dir (default: a temporary one, removed)")
    ap.add_argument("--keep", action="store_true", help="keep the output dir")
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()

    print(f"machine: {cpu_model()}, {os.cpu_count()} cores, {platform.python_implementation()} "
          f"{platform.python_version()}, numpy {np.__version__}")
    t0, c0 = time.perf_counter(), time.process_time()
    model = SimModel.load(a.model) if a.model else synthetic_model(a.dim, a.views)
    print(f"model: {a.model or 'synthetic (fitted to 100 x 20 vectors)'}: dim {model.dim}, views "
          f"{','.join(model.view_types) or 'none'}; {time.perf_counter() - t0:.2f} s wall, "
          f"{time.process_time() - c0:.2f} s CPU")

    shape = vox2_shape(a.scale)
    t0, c0 = time.perf_counter(), time.process_time()
    corpus = sample(model, **shape, session_share=0.5, tail=0.5, seed=a.seed)
    ts, cs = time.perf_counter() - t0, time.process_time() - c0
    c = corpus.counts()
    nbytes = corpus.vectors.nbytes + (corpus.views.nbytes if corpus.views is not None else 0)
    print(f"sample: {c['speakers']} speakers, {c['sessions']} sessions, {c['utterances']} utterances "
          f"(per speaker min {c['utts_per_speaker']['min']}, median {c['utts_per_speaker']['median']:g}, "
          f"max {c['utts_per_speaker']['max']}) x {c['dim']} dims + {len(corpus.view_types)} views "
          f"({nbytes / 2**20:.0f} MiB float32)")
    print(f"sample: {ts:.2f} s wall, {cs:.2f} s CPU, {c['utterances'] / ts:,.0f} utterances/s; "
          f"peak RSS {rss_mib():.0f} MiB")

    out = Path(a.out) if a.out else Path(tempfile.mkdtemp(prefix="bench_simulate."))
    try:
        t0, c0 = time.perf_counter(), time.process_time()
        write_corpus(corpus, out, "npy")
        tw, cw = time.perf_counter() - t0, time.process_time() - c0
        size = sum(p.stat().st_size for p in out.rglob("*") if p.is_file())
        print(f"write npy: {tw:.2f} s wall, {cw:.2f} s CPU, {size / 2**20:.0f} MiB in {out}; "
              f"{c['utterances'] / tw:,.0f} utterances/s")
    finally:
        if not (a.keep or a.out):
            shutil.rmtree(out, ignore_errors=True)
    print(f"total sample + write: {ts + tw:.2f} s; peak RSS {rss_mib():.0f} MiB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
