#!/usr/bin/env python3
"""Throughput of stage 2 (offline augmentation) on a data dir, one augmentation type at a time.

For each type (noise, babble, reverb, speed 0.9), one fresh worker process runs the data dir builder's
job (sslsv.augment.augment_job, nj=1) over the whole data dir: reading the source audio (and, for babble,
3–7 other utterances per copy), augmenting, writing 16-bit WAV files. Reports augmented audio seconds per
CPU second (the process and its sox children), wall time and the worker's peak resident memory.

    python bench/bench_augment.py [--data data/demo_train] [--limit N] [--out /tmp/bench_augment]
"""

from __future__ import annotations

import argparse
import datetime
import multiprocessing as mp
import platform
import resource
import shutil
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "pyscripts"))

from sslsv.augment import AugOptions, augment_job  # noqa: E402
from sslsv.tables import write_lines  # noqa: E402


def _cpu() -> float:
    s = resource.getrusage(resource.RUSAGE_SELF)
    c = resource.getrusage(resource.RUSAGE_CHILDREN)
    return s.ru_utime + s.ru_stime + c.ru_utime + c.ru_stime


def _work(args: tuple[str, str, str, str]) -> dict[str, float]:
    aug, wav_scp, utt2spk, out = args
    opts = AugOptions(types=(), speed_factors=(0.9,)) if aug == "speed" else AugOptions(types=(aug,))
    c0, t0 = _cpu(), time.perf_counter()
    res = augment_job(wav_scp, utt2spk, Path(out) / "audio", Path(out) / "part", opts,
                       verbose=False)
    wall = time.perf_counter() - t0
    cpu = _cpu() - c0
    return dict(audio_s=sum(res.audio_s.values()), copies=sum(res.copies.values()), cpu_s=cpu, wall_s=wall,
                rss_mib=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default=str(ROOT / "data/demo_train"))
    ap.add_argument("--limit", type=int, help="only the first N utterances")
    ap.add_argument("--out", default="/tmp/bench_augment")
    ap.add_argument("--types", default="noise,babble,reverb,speed")
    a = ap.parse_args()
    out = Path(a.out)
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    data = Path(a.data)
    wav, u2s = data / "wav.scp", data / "utt2spk"
    if a.limit:
        lines = wav.read_text().splitlines()[:a.limit]
        keep = {ln.split()[0] for ln in lines}
        write_lines(out / "wav.scp", lines)
        write_lines(out / "utt2spk", [ln for ln in u2s.read_text().splitlines() if ln.split()[0] in keep])
        wav, u2s = out / "wav.scp", out / "utt2spk"
    n = len(wav.read_text().splitlines())
    print(f"# {datetime.date.today()} {platform.processor() or platform.machine()} python "
          f"{platform.python_version()}; {n} utterances of {data}")
    print("| type | copies | audio (s) | CPU (s) | audio s / CPU s | wall (s) | peak RSS (MiB) |")
    print("|---|---|---|---|---|---|---|")
    ctx = mp.get_context("spawn")
    for aug in a.types.split(","):
        with ctx.Pool(1) as pool:
            r = pool.map(_work, [(aug, str(wav), str(u2s), str(out / aug))])[0]
        print(f"| {aug} | {r['copies']} | {r['audio_s']:.0f} | {r['cpu_s']:.1f} | "
              f"{r['audio_s'] / r['cpu_s']:.0f} | {r['wall_s']:.1f} | {r['rss_mib']:.0f} |", flush=True)
        shutil.rmtree(out / aug)
    return 0


if __name__ == "__main__":
    sys.exit(main())
