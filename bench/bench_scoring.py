#!/usr/bin/env python3
"""Benchmark of the back end and scoring (sslsv.backend, sslsv.scoring) on synthetic vectors.

Measures, at a stated size: LDA and PLDA training time; trials per second for cosine and PLDA scoring
(index arrays + row-wise arithmetic, chunked); EER (Kaldi's compute-eer) and minDCF (compute_min_dcf.py,
three p_targets) time on the same trials; writing the scores file; and the peak memory of each phase
(tracemalloc peak of the phase, which numpy reports its buffers to) and of the process (ru_maxrss).

Usage: python bench/bench_scoring.py [--trials 1000000] [--utts 5000] [--dim 200] [--train-utts 20000]
                                     [--train-spk 2000] [--raw-dim 400]
"""
from __future__ import annotations

import argparse
import os
import platform
import resource
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "pyscripts"))

from sslsv.backend import Lda, Plda, dot_scores, length_norm, score_pairs  # noqa: E402
from sslsv.scoring import compute_eer, compute_min_dcf, evaluate, write_scores  # noqa: E402


def rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


class Phase:
    def __init__(self, name: str, rows: list) -> None:
        self.name, self.rows = name, rows

    def __enter__(self) -> Phase:
        if tracemalloc.is_tracing():
            tracemalloc.reset_peak()
        self.t0 = time.perf_counter()
        return self

    def __exit__(self, *exc: object) -> None:
        dt = time.perf_counter() - self.t0
        _, peak = tracemalloc.get_traced_memory() if tracemalloc.is_tracing() else (0, float("nan"))
        self.rows.append((self.name, dt, peak / 2**20, rss_mib()))
        self.dt = dt


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--trials", type=int, default=1_000_000)
    ap.add_argument("--utts", type=int, default=5000, help="distinct test vectors the trials index")
    ap.add_argument("--dim", type=int, default=200, help="LDA / PLDA dimension")
    ap.add_argument("--raw-dim", type=int, default=400, help="i-vector dimension before LDA")
    ap.add_argument("--train-utts", type=int, default=20000)
    ap.add_argument("--train-spk", type=int, default=2000)
    a = ap.parse_args()
    rng = np.random.default_rng(0)
    tracemalloc.start()
    rows: list = []

    # synthetic two-covariance i-vectors
    s, d = a.raw_dim, a.dim
    spk = rng.integers(0, a.train_spk, a.train_utts)
    y = rng.normal(size=(a.train_spk, s)) * np.linspace(0.5, 0.02, s)
    xtr = y[spk] + rng.normal(size=(a.train_utts, s))
    test_spk = rng.integers(0, a.utts // 5, a.utts)
    yt = rng.normal(size=(a.utts // 5, s)) * np.linspace(0.5, 0.02, s)
    xte = yt[test_spk] + rng.normal(size=(a.utts, s))
    e = rng.integers(0, a.utts, a.trials)
    t = rng.integers(0, a.utts, a.trials)
    half = a.trials // 20  # 5 % target trials: two different utterances of one speaker
    by_spk = [u for u in (np.flatnonzero(test_spk == k) for k in np.unique(test_spk)) if len(u) >= 2]
    for i, k in enumerate(rng.integers(0, len(by_spk), half)):
        e[i], t[i] = rng.choice(by_spk[k], 2, replace=False)
    labels = test_spk[e] == test_spk[t]

    with Phase(f"LDA fit ({a.train_utts} x {s} -> {d}, {a.train_spk} spk)", rows):
        mean = xtr.mean(0)
        lda = Lda().fit(xtr - mean, spk, d)
    xl = length_norm(lda.transform(xtr - mean))
    with Phase(f"PLDA fit (10 EM iterations, {a.train_utts} x {d})", rows):
        plda = Plda().fit(xl, spk, 10)
    with Phase(f"cosine scoring, {a.trials} trials ({a.utts} vectors x {s})", rows) as ph:
        xn = length_norm(xte - mean, scaleup=False)
        cos = score_pairs(xn, e, t, dot_scores)
    cos_rate = a.trials / ph.dt
    with Phase(f"PLDA scoring, {a.trials} trials (mean, LDA, norm, transform, LLR)", rows) as ph:
        yv = plda.transform(length_norm(lda.transform(xte - mean)))
        llr = score_pairs(yv, e, t, plda.llr)
    plda_rate = a.trials / ph.dt
    with Phase(f"EER (compute-eer), {a.trials} trials", rows) as ph:
        eer, _ = compute_eer(llr[labels], llr[~labels])
    with Phase(f"minDCF x 3 p_target, {a.trials} trials", rows):
        dcf = [compute_min_dcf(llr, labels, p)[0] for p in (0.01, 0.001, 0.05)]
    tracemalloc.stop()  # it slows Python-object code many times; this phase reports RSS only
    with tempfile.TemporaryDirectory() as tmp, Phase(f"write scores file, {a.trials} lines", rows):
        names = [f"utt{i:07d}" for i in range(a.utts)]
        pairs = [(names[i], names[j]) for i, j in zip(e.tolist(), t.tolist(), strict=True)]
        write_scores(os.path.join(tmp, "scores"), pairs, llr)
    with Phase(f"evaluate() from a dict of {a.trials} scores (EER + 3 minDCF)", rows):
        tr = [(p[0], p[1], bool(lab)) for p, lab in zip(pairs, labels.tolist(), strict=True)]
        evaluate(tr, dict(zip(pairs, llr.tolist(), strict=True)))

    print(f"machine: {platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}, "
          f"numpy {np.__version__}")
    print(f"{'phase':<64} {'wall s':>8} {'peak MiB':>9} {'RSS MiB':>8}")
    for name, dt, peak, rss in rows:
        print(f"{name:<64} {dt:8.3f} {peak:9.1f} {rss:8.1f}")
    print(f"cosine: {cos_rate:,.0f} trials/s; PLDA: {plda_rate:,.0f} trials/s")
    print(f"(sanity) PLDA EER {100 * eer:.2f} %, minDCF {dcf[0]:.4f} / {dcf[1]:.4f} / {dcf[2]:.4f}; "
          f"cosine EER {100 * compute_eer(cos[labels], cos[~labels])[0]:.2f} %")
    return 0


if __name__ == "__main__":
    sys.exit(main())
