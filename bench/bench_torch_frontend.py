#!/usr/bin/env python3
"""Throughput of the 2-s training chunk's features (32,240 samples -> 200 frames): kaldi-native-fbank
(``compute_mfcc``, one utterance at a time on one core, as a data worker does) against the batched
torch module ``KaldiFeatures`` on the CPU and, when available, on CUDA. Chunks/s for each front end
config (conf/mfcc_embed.conf, 40-dim MFCC; conf/fbank_embed.conf, 80-dim fbank), plus the module's max
|difference| from knf on the benchmarked (speech-like) batch and the peak memory of the CUDA runs.

    python bench/bench_torch_frontend.py [--batch 128] [--knf-chunks 200] [--reps 5] [--threads 1]
           [--devices cpu,cuda] [--float64]
"""
from __future__ import annotations

import argparse
import dataclasses
import datetime
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "pyscripts"))
sys.path.insert(0, str(ROOT / "bench"))

import torch  # noqa: E402
from benchlib import machine, peak_memory_mib, reset_peak  # noqa: E402
from sslsv.features.kaldi_options import read_mfcc_config  # noqa: E402
from sslsv.features.mfcc import compute_mfcc  # noqa: E402
from sslsv.features.torch_frontend import KaldiFeatures  # noqa: E402

CHUNK = 32240
CONFIGS = (("mfcc_embed.conf", "mfcc"), ("fbank_embed.conf", "fbank"))


def chunks(n: int, seed: int = 0) -> np.ndarray:
    """(n, CHUNK) speech-like int16-scale chunks: harmonics of a wandering pitch, syllable-rate envelope,
    white noise at about -40 dB and dither (std 1), as the data workers would hand over."""
    rng = np.random.default_rng(seed)
    t = np.arange(CHUNK) / 16000.0
    out = np.empty((n, CHUNK), np.float32)
    for i in range(n):
        f0 = rng.uniform(90, 250) * (1 + 0.1 * np.sin(2 * np.pi * rng.uniform(0.5, 2) * t))
        phase = 2 * np.pi * np.cumsum(f0) / 16000.0
        voice = sum(np.sin(k * phase) / k for k in range(1, 25))
        env = 0.5 + 0.5 * np.sin(2 * np.pi * 4.0 * t + rng.uniform(0, 6.3)) ** 2
        out[i] = 3000 * env * voice + 30 * rng.standard_normal(CHUNK) + rng.standard_normal(CHUNK)
    return out


def sync(dev: torch.device) -> None:
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)


def bench_knf(x: np.ndarray, cfg, kind: str) -> tuple[float, list[np.ndarray]]:
    """Chunks/s of compute_mfcc on this process (set to one thread) and the features."""
    compute_mfcc(x[0], 16000, cfg, kind=kind)
    t0 = time.perf_counter()
    feats = [compute_mfcc(row, 16000, cfg, kind=kind) for row in x]
    return len(x) / (time.perf_counter() - t0), feats


def bench_module(x: np.ndarray, cfg, kind: str, dev: torch.device, batch: int, reps: int,
                 dtype: torch.dtype) -> tuple[float, np.ndarray, float]:
    """Chunks/s of KaldiFeatures on ``dev`` (input already on the device), the features of the first
    batch, and the peak memory (MiB)."""
    m = KaldiFeatures(cfg, kind, dtype=dtype).to(dev)
    w = torch.from_numpy(x[:batch]).to(dev)
    with torch.inference_mode():
        first = m(w)                                  # warm-up: cuFFT plans, allocator
        sync(dev)
        reset_peak(dev)
        t0 = time.perf_counter()
        for _ in range(reps):
            m(w)
        sync(dev)
        rate = reps * batch / (time.perf_counter() - t0)
    return rate, first.float().cpu().numpy(), peak_memory_mib(dev)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--knf-chunks", type=int, default=200)
    ap.add_argument("--reps", type=int, default=5, help="timed batches per device (CUDA: x20)")
    ap.add_argument("--threads", type=int, default=1, help="torch CPU threads for the module")
    ap.add_argument("--devices", default="cpu,cuda")
    ap.add_argument("--float64", action="store_true", help="also time the module in float64")
    args = ap.parse_args()

    torch.set_num_threads(args.threads)
    devices = [torch.device(d) for d in args.devices.split(",")
               if d != "cuda" or torch.cuda.is_available()]
    print(f"# {datetime.datetime.now():%Y-%m-%d %H:%M} {machine(devices[-1])}")
    print(f"# 2-s chunks ({CHUNK} samples, 200 frames); knf: one chunk at a time; module: batch "
          f"{args.batch}, input already on the device")
    x = chunks(max(args.batch, args.knf_chunks))
    dtypes = [torch.float32] + ([torch.float64] if args.float64 else [])
    print(f"{'config':18s} {'front end':28s} {'chunks/s':>10s} {'x knf':>7s} {'max|d| vs knf':>14s} "
          f"{'peak MiB':>9s}")
    for conf, kind in CONFIGS:
        cfg = dataclasses.replace(read_mfcc_config(ROOT / "conf" / conf), dither=0.0)
        knf_rate, knf_feats = bench_knf(x[:args.knf_chunks], cfg, kind)
        print(f"{conf:18s} {'knf, 1 core':28s} {knf_rate:10.0f} {1.0:7.1f} {'':>14s} {'':>9s}")
        ref = np.stack(knf_feats[:min(args.batch, args.knf_chunks)])
        for dev in devices:
            for dtype in dtypes:
                reps = args.reps * (20 if dev.type == "cuda" else 1)
                rate, feats, peak = bench_module(x, cfg, kind, dev, args.batch, reps, dtype)
                diff = np.abs(feats[:len(ref)] - ref).max()
                name = f"module {dev.type}" + (f" {args.threads} thr" if dev.type == "cpu" else "") + \
                    f" {str(dtype)[6:]}"
                print(f"{conf:18s} {name:28s} {rate:10.0f} {rate / knf_rate:7.1f} {diff:14.2e} {peak:9.0f}")


if __name__ == "__main__":
    main()
