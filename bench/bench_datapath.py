#!/usr/bin/env python3
"""Benchmark of the training data path of stage 8 on one CPU core: items/s of ``ChunkDataset`` (what one
DataLoader worker delivers), with no model.

Each configuration reads the same items (epoch 0, a fixed set of indices) in one process with one torch
thread, after a warm-up pass that brings the files into the page cache:

* ``reads``: ``window`` (the default: only the samples a chunk needs, :mod:`sslsv.embed.voiced`) or
  ``whole`` (every item decodes its utterance and each babble source whole: the path before window reads);
* ``compute``: ``worker`` (MFCC in the worker) or ``device`` (the worker delivers the dithered waveform);
* ``aug``: ``off``, ``on`` (corruption with probability 0.6: reverb / noise / babble / reverb+noise, in the
  worker), ``on+sp`` (also speed perturbation, as conf/embed/ecapa_c512.yaml), ``dev`` / ``dev+sp`` (the
  same with ``augment.compute: device``: the worker draws the plan and mixes babble, the corruption and
  dither run in the training step; only with ``compute: device``).

Then the training step's share of ``dev``: :func:`sslsv.embed.device_augment.apply` on batches of
--batch plans, ms per batch on --device (the device-side cost the workers no longer pay).

The corpus is a VoxCeleb2-shaped synthetic dir written to a temporary dir (FLAC, durations log-normal
around 7.8 s clipped to 4-20 s, a VAD with about 15 % of the frames unvoiced in bursts), or --data-dir (a
Kaldi data dir with wav.scp, utt2spk, vad.scp, e.g. data/speechocean762_train).

Usage: python bench/bench_datapath.py [--utts 400] [--items 300] [--data-dir DIR] [--format flac|wav]
           [--reads window,whole] [--compute device,worker] [--aug off,on,on+sp,dev,dev+sp]
           [--batch 128] [--device cpu]
"""
from __future__ import annotations

import argparse
import dataclasses
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "pyscripts"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import torch  # noqa: E402
from benchlib import machine, rss_mib  # noqa: E402
from sslsv.embed import data as edata  # noqa: E402
from sslsv.embed.voiced import ArraySource, load_voiced  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def make_data_dir(out: Path, utts: int, speakers: int = 40, seed: int = 0, fmt: str = "flac"
                  ) -> tuple[Path, float]:
    """Utterances (FLAC or WAV) of VoxCeleb2-like durations with a bursty VAD; returns (dir, mean s)."""
    import kaldiio
    import soundfile as sf

    rng = np.random.default_rng(seed)
    out.mkdir(parents=True, exist_ok=True)
    secs = np.clip(rng.lognormal(np.log(7.0), 0.45, utts), 4.0, 20.0)
    wav, u2s = [], []
    with kaldiio.WriteHelper(f"ark,scp:{out / 'vad.ark'},{out / 'vad.scp'}") as w:
        for i, s in enumerate(secs):
            n = int(s * 16000)
            spk = i % speakers
            t = np.arange(n) / 16000
            f0 = 90 + 4 * spk
            x = sum(np.sin(2 * np.pi * k * f0 * t + rng.uniform(0, 6.3)) / k for k in range(1, 12))
            x = 3000 * x / np.abs(x).max() + 100 * rng.standard_normal(n)
            utt = f"s{spk:03d}-u{i:05d}"
            sf.write(out / f"{utt}.{fmt}", x.astype(np.int16), 16000, subtype="PCM_16")
            wav.append(f"{utt} {out / f'{utt}.{fmt}'}")
            u2s.append(f"{utt} s{spk:03d}")
            frames = (n + 80) // 160
            vad = np.ones(frames, dtype=np.float32)
            for start in rng.integers(0, frames, size=max(1, frames // 100)):   # ~15 % unvoiced
                vad[start:start + int(rng.integers(5, 25))] = 0
            w(utt, vad)
    (out / "wav.scp").write_text("\n".join(sorted(wav)) + "\n")
    (out / "utt2spk").write_text("\n".join(sorted(u2s)) + "\n")
    return out, float(secs.mean())


def whole_reads() -> None:
    """The path before window reads: every access decodes the utterance whole."""
    edata.open_voiced = lambda *args: ArraySource(load_voiced(*args))


def run(tl: edata.TrainingList, reads: str, compute: str, aug: str, items: np.ndarray) -> tuple[float, float]:
    feat = edata.FeatureConfig(mfcc_config=str(ROOT / "conf/mfcc_embed.conf"), compute=compute)
    cfg = edata.AugConfig.off() if aug == "off" else dataclasses.replace(
        edata.AugConfig(), speed_perturb=aug.endswith("+sp"),
        compute="device" if aug.startswith("dev") else "worker")
    ds = edata.ChunkDataset(tl, feat, cfg, seed=0)
    for i in items[:20]:
        ds[int(i)]
    t0 = time.perf_counter()
    for i in items:
        ds[int(i)]
    dt = time.perf_counter() - t0
    return len(items) / dt, 1000 * dt / len(items)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--utts", type=int, default=400)
    ap.add_argument("--items", type=int, default=300)
    ap.add_argument("--data-dir")
    ap.add_argument("--format", default="flac", choices=["flac", "wav"], help="of the synthetic corpus")
    ap.add_argument("--reads", default="window,whole")
    ap.add_argument("--compute", default="device,worker")
    ap.add_argument("--aug", default="off,on,on+sp,dev,dev+sp")
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--device", default="cpu")
    a = ap.parse_args()
    torch.set_num_threads(1)
    print(machine())
    with tempfile.TemporaryDirectory() as tmp:
        if a.data_dir:
            d, desc = Path(a.data_dir), a.data_dir
        else:
            t0 = time.perf_counter()
            d, mean = make_data_dir(Path(tmp) / "data", a.utts, fmt=a.format)
            desc = (f"synthetic VoxCeleb2-shaped {a.format.upper()}, {a.utts} utterances, mean {mean:.1f} s "
                    f"(written in {time.perf_counter() - t0:.0f} s)")
        tl = edata.read_training_list(d)
        items = np.random.default_rng(1).choice(len(tl), size=min(a.items, len(tl)), replace=False)
        for i in items:                               # page cache warm for every configuration
            Path(tl.wavs[int(i)].split()[0]).read_bytes() if "|" not in tl.wavs[int(i)] else None
        print(f"corpus: {desc}; {len(items)} items per configuration, one process, 1 torch thread")
        print(f"{'reads':>7} {'compute':>8} {'aug':>6} {'items/s':>9} {'ms/item':>8} {'RSS MiB':>8}")
        for reads in a.reads.split(","):
            if reads == "whole":
                whole_reads()
            for compute in a.compute.split(","):
                for aug in a.aug.split(","):
                    if aug.startswith("dev") and compute != "device":
                        continue
                    ips, ms = run(tl, reads, compute, aug, items)
                    print(f"{reads:>7} {compute:>8} {aug:>6} {ips:>9.1f} {ms:>8.2f} {rss_mib():>8.0f}",
                          flush=True)

        bench_apply(tl, a.batch, torch.device(a.device))


def bench_apply(tl: edata.TrainingList, batch: int, dev: torch.device) -> None:
    """ms per batch of the device side of ``augment.compute: device`` (corruption and dither)."""
    from sslsv.embed import device_augment

    feat = edata.FeatureConfig(mfcc_config=str(ROOT / "conf/mfcc_embed.conf"), compute="device")
    ds = edata.ChunkDataset(tl, feat, dataclasses.replace(edata.AugConfig(), compute="device"), seed=0)
    b = torch.utils.data.default_collate([ds[i % len(tl)][0] for i in range(batch)])
    b = {k: v.to(dev) for k, v in b.items()}
    typ = b["plan"][:, device_augment.TYPE].long().bincount(minlength=5).tolist()

    def once() -> None:
        device_augment.apply(b["wave"], b["plan"], b["key"], 16000, "power", 1.0)
        if dev.type == "cuda":
            torch.cuda.synchronize(dev)

    once()
    reps = 10
    t0 = time.perf_counter()
    for _ in range(reps):
        once()
    ms = 1000 * (time.perf_counter() - t0) / reps
    print(f"device side on {dev}: {ms:.1f} ms per batch of {batch} (none/reverb/noise/babble/"
          f"reverb+noise = {'/'.join(map(str, typ))}), {1000 * batch / ms:.0f} chunks/s")


if __name__ == "__main__":
    main()
