#!/usr/bin/env python3
"""Throughput of stage 1 (audio decoding + Kaldi MFCC + energy VAD) on the speechocean762 copy.

Reports the real-time factor per core (audio seconds processed per CPU second, split into decoding,
MFCC and VAD), the wall time with 1 and 2 worker processes, and the peak resident memory of a worker.
Configs are the recipe's conf/mfcc.conf (dither 1.0, seeded per utterance) and conf/vad.conf.

    python bench/bench_mfcc_vad.py [--corpus DIR] [--limit N] [--procs 1 2]
"""

from __future__ import annotations

import argparse
import datetime
import multiprocessing as mp
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "pyscripts"))

from sslsv.audio import read_audio  # noqa: E402
from sslsv.features import compute_mfcc, compute_vad, read_mfcc_config, read_vad_config  # noqa: E402


def _work(files: list[tuple[str, str]]) -> dict[str, float]:
    """Process a shard; return audio seconds, frames, CPU seconds per phase and peak RSS (MiB)."""
    mcfg = read_mfcc_config(ROOT / "conf" / "mfcc.conf")
    vcfg = read_vad_config(ROOT / "conf" / "vad.conf")
    out = dict(audio_s=0.0, frames=0.0, voiced=0.0, decode_cpu=0.0, mfcc_cpu=0.0, vad_cpu=0.0)
    for utt, path in files:
        t0 = time.process_time()
        x, sr = read_audio(path)
        t1 = time.process_time()
        feats = compute_mfcc(x, sr, mcfg, utt_id=utt)
        t2 = time.process_time()
        vad = compute_vad(feats, vcfg)
        t3 = time.process_time()
        out["audio_s"] += len(x) / sr
        out["frames"] += feats.shape[0]
        out["voiced"] += float(vad.sum())
        out["decode_cpu"] += t1 - t0
        out["mfcc_cpu"] += t2 - t1
        out["vad_cpu"] += t3 - t2
    out["rss_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return out


def run(files: list[tuple[str, str]], procs: int) -> tuple[float, dict[str, float]]:
    """Wall time and summed statistics of processing ``files`` with ``procs`` worker processes."""
    shards = [files[i::procs] for i in range(procs)]
    ctx = mp.get_context("spawn")                 # fresh workers: RSS is that of the work alone
    with ctx.Pool(procs) as pool:
        pool.map(_noop, range(procs))             # start-up (imports) is not timed
        t0 = time.perf_counter()
        results = pool.map(_work, shards)
        wall = time.perf_counter() - t0
    total = {k: sum(r[k] for r in results) for k in results[0] if k != "rss_mib"}
    total["rss_mib"] = max(r["rss_mib"] for r in results)
    return wall, total


def _noop(_: int) -> None:
    import kaldi_native_fbank  # noqa: F401


def cpu_model() -> str:
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
        info = dict(line.split(":", 1) for line in out.splitlines() if ":" in line)
        return f"{info['Model name'].strip()}, {info['CPU(s)'].strip()} cores"
    except (OSError, subprocess.CalledProcessError, KeyError):
        return f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    default = Path(__file__).resolve().parents[2] / "shared/data/speechocean762-train"
    ap.add_argument("--corpus", default=os.environ.get("SSLSV_SPEECHOCEAN", str(default)))
    ap.add_argument("--limit", type=int, default=0, help="only the first N utterances (0: all)")
    ap.add_argument("--procs", type=int, nargs="+", default=[1, 2])
    a = ap.parse_args()
    audio = sorted(Path(a.corpus, "audio").glob("*.flac"))
    if not audio:
        print(f"no audio under {a.corpus}/audio", file=sys.stderr)
        return 1
    if a.limit:
        audio = audio[: a.limit]
    files = [(p.stem, str(p)) for p in audio]
    print(f"# stage-1 benchmark: {len(files)} utterances from {a.corpus}")
    print(f"# machine: {cpu_model()}; date: {datetime.date.today()}; python {platform.python_version()}")
    rows = []
    for p in a.procs:
        wall, s = run(files, p)
        cpu = s["decode_cpu"] + s["mfcc_cpu"] + s["vad_cpu"]
        rows.append((p, wall, s, cpu))
    s = rows[0][2]
    print(f"# audio: {s['audio_s'] / 3600:.2f} h, {int(s['frames'])} frames, "
          f"{100 * s['voiced'] / s['frames']:.1f} % voiced")
    print()
    print("| processes | wall (s) | audio s / wall s | audio s / CPU s (all) | decode | MFCC | VAD "
          "| peak RSS / worker (MiB) |")
    print("|---|---|---|---|---|---|---|---|")
    for p, wall, s, cpu in rows:
        au = s["audio_s"]
        print(f"| {p} | {wall:.1f} | {au / wall:.0f} | {au / cpu:.0f} | {au / s['decode_cpu']:.0f} "
              f"| {au / s['mfcc_cpu']:.0f} | {au / s['vad_cpu']:.0f} | {s['rss_mib']:.0f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
