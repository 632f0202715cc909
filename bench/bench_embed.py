#!/usr/bin/env python3
"""Benchmark of the speaker-embedding network (stages 8-9): training throughput, data-loader wait, peak
memory, and the extraction real-time factor.

Part 1, model: training steps (forward, AAM head over K classes, backward, SGD step) on random (B, T, F)
feature batches, for each channel width: samples/s and peak memory (torch's peak allocation on CUDA,
process RSS on CPU). ``--head ntxent``: the label-free NT-Xent-AM objective instead (B utterances × 2
views = 2B chunks per step; samples/s counts utterances, chunks/s is twice that).
Part 2, pipeline: the real training loop's data path: ChunkDataset (read, VAD, random 2-s chunk,
augmentation with probability 0.6, MFCC) through a DataLoader with W workers feeding the model; reports
samples/s and the fraction of the wall time the step waited for data. A synthetic data dir (harmonic
"voices" in noise, every frame voiced) is written to a temporary dir unless --data-dir is given.
Part 3, extraction: whole-utterance features + embedding of U utterances of L seconds: real-time factor.

Usage: python bench/bench_embed.py [--device cpu|cuda] [--channels 512,1024] [--batch 32] [--steps 10]
           [--head aam|ntxent]
           [--precision fp32,tf32,bf16] [--compute worker|device] [--aug-compute worker|device]
           [--classes 5994] [--workers 1] [--pipeline-steps 20] [--extract-utts 20] [--extract-seconds 8]
           [--data-dir DIR] [--skip model,pipeline,extract]
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "pyscripts"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import torch  # noqa: E402
from benchlib import machine, peak_memory_mib, reset_peak  # noqa: E402
from sslsv.device import resolve_device  # noqa: E402
from sslsv.embed import data as edata  # noqa: E402
from sslsv.embed.ecapa import build_model  # noqa: E402
from sslsv.embed.extract import embed_features  # noqa: E402
from sslsv.embed.heads import build_head  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def sync(dev: torch.device) -> None:
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)


def make_data_dir(out: Path, utts: int, seconds: float, speakers: int = 20, seed: int = 0) -> Path:
    """wav.scp / utt2spk / vad.scp of synthetic 16-kHz utterances (harmonics of a speaker's pitch + noise)."""
    import kaldiio
    import soundfile as sf

    rng = np.random.default_rng(seed)
    out.mkdir(parents=True, exist_ok=True)
    n = int(seconds * 16000)
    t = np.arange(n) / 16000
    wav, u2s = [], []
    with kaldiio.WriteHelper(f"ark,scp:{out / 'vad.ark'},{out / 'vad.scp'}") as w:
        for i in range(utts):
            spk = i % speakers
            f0 = 90 + 10 * spk + 5 * rng.standard_normal()
            x = sum(np.sin(2 * np.pi * k * f0 * t + rng.uniform(0, 6.3)) / k for k in range(1, 12))
            x = 3000 * x / np.abs(x).max() + 100 * rng.standard_normal(n)
            utt = f"s{spk:03d}-u{i:04d}"
            sf.write(out / f"{utt}.wav", x.astype(np.int16), 16000)
            wav.append(f"{utt} {out / f'{utt}.wav'}")
            u2s.append(f"{utt} s{spk:03d}")
            w(utt, np.ones(1 + (n - 400) // 160, dtype=np.float32))
    (out / "wav.scp").write_text("\n".join(sorted(wav)) + "\n")
    (out / "utt2spk").write_text("\n".join(sorted(u2s)) + "\n")
    return out


def set_precision(dev: torch.device, precision: str) -> bool:
    """fp32 (exact), tf32 (TF32 tensor cores for fp32) or bf16 (autocast); returns whether to autocast."""
    if dev.type == "cuda":
        torch.backends.cudnn.benchmark = True
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = precision == "tf32"
    return precision == "bf16"


def bench_model(a: argparse.Namespace, dev: torch.device) -> None:
    views = 2 if a.head == "ntxent" else 1
    what = (f"AAM head K={a.classes}" if views == 1
            else f"NT-Xent-AM over {views} views ({views * a.batch} chunks)")
    print(f"\n[model] training steps on random features: B={a.batch}, T=200, F=40, {what}, "
          f"SGD; {a.steps} timed steps after 2 warm-up steps")
    print(f"{'C':>6} {'precision':>9} {'params':>10} {'samples/s':>10} {'ms/step':>9} {'peak MiB':>9}")
    for c, precision in ((c, p) for c in a.channels for p in a.precision):
        amp = set_precision(dev, precision)
        torch.manual_seed(0)
        model = build_model({"feat_dim": 40, "channels": c}).to(dev)
        head = build_head(a.head, model.embed_dim, a.classes).to(dev)
        params = list(model.parameters()) + list(head.parameters())
        opt = torch.optim.SGD(params, lr=0.01, momentum=0.9, nesterov=True, weight_decay=1e-4)
        x = torch.randn(a.batch * views, 200, 40, device=dev)
        y = torch.randint(0, a.classes, (a.batch,), device=dev)
        reset_peak(dev)

        def step(model=model, head=head, opt=opt, x=x, y=y, amp=amp) -> None:
            with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=amp):
                emb = model(x)
            loss = head.loss_per_sample(emb.float(), y).mean()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()

        for _ in range(2):
            step()
        sync(dev)
        t0 = time.perf_counter()
        for _ in range(a.steps):
            step()
        sync(dev)
        dt = time.perf_counter() - t0
        n = sum(p.numel() for p in model.parameters())
        print(f"{c:>6} {precision:>9} {n:>10,} {a.steps * a.batch / dt:>10.1f} {1000 * dt / a.steps:>9.1f} "
              f"{peak_memory_mib(dev):>9.0f}")


def bench_pipeline(a: argparse.Namespace, dev: torch.device, data_dir: Path) -> None:
    set_precision(dev, "tf32")   # the trainer's default on CUDA (train.tf32)
    feat_cfg = edata.FeatureConfig.from_dict({"mfcc_config": str(ROOT / "conf/mfcc_embed.conf"),
                                              "compute": a.compute})
    frontend = edata.device_frontend(feat_cfg, dev)
    if a.aug_compute == "device" and a.compute != "device":
        raise SystemExit("--aug-compute device needs --compute device (features made after corruption)")
    aug_cfg = edata.AugConfig.from_dict({"aug_prob": 0.6, "compute": a.aug_compute})
    items = edata.read_training_list(data_dir, use_vad=True)
    k = len(items.speakers)
    ds = edata.ChunkDataset(items, feat_cfg, aug_cfg, num_classes=k, seed=0)
    ds.set_epoch(1)
    # data alone, in this process: the cost of one item
    t0 = time.perf_counter()
    n_items = min(64, len(ds))
    for i in range(n_items):
        ds[i]
    per_item = (time.perf_counter() - t0) / n_items
    what = ("MFCC" if a.compute == "worker" else "dither; MFCC on the device in the step"
            if a.aug_compute == "worker" else "plan and babble; corruption, dither, MFCC on the device")
    print(f"\n[pipeline] {data_dir}: {len(ds)} utterances, {k} speakers; one item (read, VAD, chunk, "
          f"augmentation p=0.6, {what}) takes {1000 * per_item:.1f} ms on one core = "
          f"{1 / per_item:.0f} items/s per worker; model in fp32 with TF32 on CUDA")
    print(f"{'C':>6} {'workers':>7} {'samples/s':>10} {'data wait':>10}")
    for c in a.channels:
        torch.manual_seed(0)
        model = build_model({"feat_dim": feat_cfg.feat_dim, "channels": c}).to(dev)
        head = build_head("aam", model.embed_dim, k).to(dev)
        opt = torch.optim.SGD(list(model.parameters()) + list(head.parameters()), lr=0.01, momentum=0.9)
        for w in a.workers:
            # one pass of (steps + 2) batches drawn with replacement, so the pipeline is never refilled
            n = (a.pipeline_steps + 2) * a.batch
            sampler = torch.utils.data.RandomSampler(ds, replacement=True, num_samples=n)
            kw = {"num_workers": w, "batch_size": a.batch, "sampler": sampler, "drop_last": True,
                  "pin_memory": dev.type == "cuda"}
            if w > 0:
                kw.update(worker_init_fn=edata.worker_init_fn, prefetch_factor=4)
            loader = torch.utils.data.DataLoader(ds, **kw)
            wait, seen = 0.0, 0
            t_start = t_wait = time.perf_counter()
            for steps, (x, y) in enumerate(loader):
                x, y = edata.to_device(x, dev), y.to(dev, non_blocking=True)
                if steps >= 2:       # the first two steps fill the pipeline and warm the model up
                    wait += time.perf_counter() - t_wait
                    seen += len(y)
                x = edata.device_inputs(x, feat_cfg, aug_cfg, frontend)
                loss = head.loss_per_sample(model(edata.cmn(x)).float(), y).mean()
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                sync(dev)
                if steps == 1:
                    t_start = time.perf_counter()
                t_wait = time.perf_counter()
            dt = time.perf_counter() - t_start
            print(f"{c:>6} {w:>7} {seen / dt:>10.1f} {100 * wait / dt:>9.1f}%")
            del loader


def bench_extract(a: argparse.Namespace, dev: torch.device, data_dir: Path) -> None:
    feat_cfg = edata.FeatureConfig.from_dict({"mfcc_config": str(ROOT / "conf/mfcc_embed.conf")})
    items = edata.read_training_list(data_dir, use_vad=True)
    n = min(a.extract_utts, len(items.utts))
    print(f"\n[extract] {n} utterances of {data_dir} (features + CMN + one forward each)")
    print(f"{'C':>6} {'audio s':>8} {'feat s':>7} {'net s':>7} {'RTF':>8}")
    feats = []
    t0 = time.perf_counter()
    for i in range(n):
        feats.append(items.utterance_features(i, feat_cfg))
    t_feat = time.perf_counter() - t0
    audio = sum(len(f) for f in feats) * 0.01
    for c in a.channels:
        model = build_model({"feat_dim": feat_cfg.feat_dim, "channels": c}).to(dev).eval()
        embed_features(model, feats[0], dev)
        sync(dev)
        t0 = time.perf_counter()
        for f in feats:
            embed_features(model, f, dev)
        sync(dev)
        t_net = time.perf_counter() - t0
        print(f"{c:>6} {audio:>8.1f} {t_feat:>7.2f} {t_net:>7.2f} {(t_feat + t_net) / audio:>8.4f}")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--channels", default="512,1024")
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--classes", type=int, default=5994)
    ap.add_argument("--head", default="aam", choices=["aam", "ntxent"], help="model part: the objective")
    ap.add_argument("--workers", default="1", help="DataLoader workers; a list runs each")
    ap.add_argument("--pipeline-steps", type=int, default=20)
    ap.add_argument("--extract-utts", type=int, default=20)
    ap.add_argument("--extract-seconds", type=float, default=8.0)
    ap.add_argument("--compute", default="worker", help="pipeline: features by the workers or on the device")
    ap.add_argument("--aug-compute", default="worker", choices=["worker", "device"],
                    help="pipeline: corruption by the workers or on the device (needs --compute device)")
    ap.add_argument("--precision", default="fp32", help="list of fp32 | tf32 | bf16 (model part, CUDA)")
    ap.add_argument("--data-dir", default=None, help="a data dir with wav.scp, utt2spk, vad.scp")
    ap.add_argument("--skip", default="")
    a = ap.parse_args()
    a.channels = [int(c) for c in a.channels.split(",")]
    a.workers = [int(w) for w in a.workers.split(",")]
    a.precision = a.precision.split(",")
    skip = set(a.skip.split(",")) - {""}
    dev = resolve_device(a.device)
    print(f"bench_embed: {machine(dev)}; {time.strftime('%Y-%m-%d')}")
    with tempfile.TemporaryDirectory() as tmp:
        data_dir = Path(a.data_dir) if a.data_dir else None
        if "model" not in skip:
            bench_model(a, dev)
        if not {"pipeline", "extract"} <= skip and data_dir is None:
            data_dir = make_data_dir(Path(tmp) / "data", max(4 * a.batch, a.extract_utts), a.extract_seconds)
        if "pipeline" not in skip:
            bench_pipeline(a, dev, data_dir)
        if "extract" not in skip:
            bench_extract(a, dev, data_dir)
    return 0


if __name__ == "__main__":
    sys.exit(main())
