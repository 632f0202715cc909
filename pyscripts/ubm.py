#!/usr/bin/env python3
"""UBM training commands (the work of steps/train_diag_ubm.sh and steps/train_full_ubm.sh):

  ubm.py init-diag    [opts] <data> <out.dubm>           Phase A: reservoir sample, init, split schedule
  ubm.py acc-diag     [opts] <data> <model.dubm> <gselect-model.dubm> <out.acc>
  ubm.py est-diag     [opts] <model.dubm> <out.dubm> <acc>...
  ubm.py train-diag   [opts] <data> <dir> <start-iter>    all main iterations in one process (GPU path)
  ubm.py init-full    <diag.dubm> <out.ubm>              gmm-global-to-fgmm
  ubm.py acc-full     [opts] <data> <model.ubm> <gselect-model.ubm> <out.acc>
  ubm.py est-full     [opts] <model.ubm> <out.ubm> <acc>...
  ubm.py train-full   [opts] <data> <dir> <start-iter>

Options of the diag_ubm / full_ubm sections of the config may be overridden with ``--set key=value``.
Gaussian selection is made with a fixed model (``0.dubm``; the diagonal of ``0.ubm``) in every iteration,
so the selected indices are the same in every iteration (Kaldi stores them once; recomputing them from the
same fixed model gives the same indices without the disk traffic).
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

import numpy as np
import torch
from sslsv.datadir.split import partition
from sslsv.device import resolve_device
from sslsv.ivector.frames import FrameOptions, iter_frames
from sslsv.ivector.gmm import (
    DiagAccumulator,
    DiagGmm,
    FrameReservoir,
    FullAccumulator,
    FullGmm,
    GmmStats,
    chunked,
    mle_diag_update,
    mle_full_update,
    train_init,
)
from sslsv.ivector.ubm_options import ubm_options
from sslsv.logs import setup
from sslsv.tables import DataError, c_sorted, read_scp

DTYPES = {"float32": torch.float32, "float64": torch.float64}
CHUNK = 8192


log = logging.getLogger("ubm.py")


def opts_of(args, name: str) -> dict:
    return ubm_options(args.config, name, args.set)


def frame_opts(args) -> FrameOptions:
    return FrameOptions.load(args.frame_opts) if args.frame_opts else FrameOptions.from_config(args.config)


def part_utts(data: str, part: str | None) -> list[str] | None:
    """Utterances of job ``J/N`` (contiguous per-utterance parts of feats.scp in C order), or all."""
    if not part:
        return None
    try:
        j, n = (int(v) for v in part.split("/"))
    except ValueError:
        raise DataError(f"--part must be J/N, got {part!r}") from None
    utts = c_sorted(read_scp(Path(data) / "feats.scp"))
    if not 1 <= j <= n:
        raise DataError(f"--part {part}: J must be in 1..N")
    return partition({u: u for u in utts}, n, per_utt=True)[j - 1]


def frames_of(args, subsample: int, utts: list[str] | None = None):
    return (x for _, x in iter_frames(args.data, frame_opts(args), subsample, utts))


def check_inputs(data: str) -> int:
    """All feats.scp utterances need a VAD entry (error naming vad.scp); returns the count."""
    feats = read_scp(Path(data) / "feats.scp")
    vad = read_scp(Path(data) / "vad.scp")
    missing = [u for u in c_sorted(feats) if u not in vad]
    if missing:
        raise DataError(f"{Path(data) / 'vad.scp'}: no VAD entry for {len(missing)} utterance(s) of "
                        f"feats.scp, e.g. {missing[0]!r}")
    return len(feats)


# -------------------------------------------------------------------------------------------------- diag

def cmd_init_diag(args) -> None:
    o = opts_of(args, "diag_ubm")
    dev = resolve_device(args.device)
    n_utts = check_inputs(args.data)
    c = int(o["num_gauss"])
    c0 = int(o["initial_gauss_proportion"] * c)
    rng = np.random.default_rng(args.seed)
    fo = frame_opts(args)
    res = None
    for _, x in iter_frames(args.data, fo, 1):
        if res is None:
            res = FrameReservoir(int(o["num_frames"]), x.shape[1], rng)
        res.add(x)
    if res is None:
        raise DataError(f"{args.data}: no utterance has voiced frames")
    frames = res.frames()
    log.info(f"init-diag: {frames.shape[0]} of {res.seen} voiced frames ({n_utts} utterances) kept, dim "
        f"{frames.shape[1]}; {c0} -> {c} Gaussians in {o['num_iters_init']} iterations on {dev}")
    gmm = train_init(frames, c, c0, int(o["num_iters_init"]), rng,
                     min_gaussian_weight=float(o["min_gaussian_weight"]), remove_low_count_gaussians=True,
                     device=dev, dtype=DTYPES[args.dtype])
    gmm.save(args.out)
    log.info(f"init-diag: wrote {args.out} ({gmm.num_gauss} Gaussians)")


def cmd_acc_diag(args) -> None:
    o = opts_of(args, "diag_ubm")
    dev = resolve_device(args.device)
    acc = DiagAccumulator(DiagGmm.load(args.model), DiagGmm.load(args.gselect_model), int(o["num_gselect"]),
                          dev, DTYPES[args.dtype])
    for x in chunked(frames_of(args, int(o["subsample"]), part_utts(args.data, args.part)), CHUNK):
        acc.add(x)
    st = acc.stats()
    st.save(args.out)
    log.info(f"acc-diag: {int(st.num_frames)} frames, average log-likelihood {st.avg_loglik:.6f} "
             f"-> {args.out}")


def est_diag(gmm: DiagGmm, st: GmmStats, o: dict, last: bool, it: int) -> DiagGmm:
    remove = bool(o["remove_low_count_gaussians"]) and last
    new, info = mle_diag_update(gmm, st, min_gaussian_weight=float(o["min_gaussian_weight"]),
                                remove_low_count_gaussians=remove)
    log.info(f"iteration {it}: average log-likelihood per frame {st.avg_loglik:.6f} over "
             f"{int(st.num_frames)} frames (gselect {o['num_gselect']}); {info.summary()}; "
             f"{new.num_gauss} Gaussians")
    return new


def sum_stats(paths: list[str]) -> GmmStats:
    tot = GmmStats.load(paths[0])
    for p in paths[1:]:
        tot.add(GmmStats.load(p))
    return tot


def cmd_est_diag(args) -> None:
    o = opts_of(args, "diag_ubm")
    new = est_diag(DiagGmm.load(args.model), sum_stats(args.accs), o, args.last, args.iter)
    new.save(args.out)


def cached_frames(args, subsample: int) -> list[np.ndarray]:
    out = list(frames_of(args, subsample))
    if not out:
        raise DataError(f"{args.data}: no utterance has voiced frames")
    return out


def cmd_train_diag(args) -> None:
    o = opts_of(args, "diag_ubm")
    dev = resolve_device(args.device)
    d = Path(args.dir)
    frames = cached_frames(args, int(o["subsample"]))
    g0 = DiagGmm.load(d / "0.dubm")
    n = int(o["num_iters"])
    gmm = DiagGmm.load(d / f"{args.start}.dubm")
    for it in range(args.start, n):
        acc = DiagAccumulator(gmm, g0, int(o["num_gselect"]), dev, DTYPES[args.dtype])
        for x in chunked(frames, CHUNK):
            acc.add(x)
        gmm = est_diag(gmm, acc.stats(), o, it == n - 1, it)
        gmm.save(d / f"{it + 1}.dubm")


# -------------------------------------------------------------------------------------------------- full

def cmd_init_full(args) -> None:
    DiagGmm.load(args.diag).to_full().save(args.out)
    log.info(f"init-full: {args.diag} -> {args.out}")


def cmd_acc_full(args) -> None:
    o = opts_of(args, "full_ubm")
    dev = resolve_device(args.device)
    acc = FullAccumulator(FullGmm.load(args.model), FullGmm.load(args.gselect_model).to_diag(),
                          int(o["num_gselect"]), dev, DTYPES[args.dtype])
    for x in chunked(frames_of(args, int(o["subsample"]), part_utts(args.data, args.part)), CHUNK):
        acc.add(x)
    st = acc.stats()
    st.save(args.out)
    log.info(f"acc-full: {int(st.num_frames)} frames, average log-likelihood {st.avg_loglik:.6f} "
             f"-> {args.out}")


def est_full(gmm: FullGmm, st: GmmStats, o: dict, last: bool, it: int) -> FullGmm:
    remove = bool(o["remove_low_count_gaussians"]) and last
    new, info = mle_full_update(gmm, st, min_gaussian_weight=float(o["min_gaussian_weight"]),
                                remove_low_count_gaussians=remove)
    log.info(f"iteration {it}: average log-likelihood per frame {st.avg_loglik:.6f} over "
             f"{int(st.num_frames)} frames (gselect {o['num_gselect']}); {info.summary()}; "
             f"{new.num_gauss} Gaussians")
    return new


def cmd_est_full(args) -> None:
    o = opts_of(args, "full_ubm")
    new = est_full(FullGmm.load(args.model), sum_stats(args.accs), o, args.last, args.iter)
    new.save(args.out)


def cmd_train_full(args) -> None:
    o = opts_of(args, "full_ubm")
    dev = resolve_device(args.device)
    d = Path(args.dir)
    frames = cached_frames(args, int(o["subsample"]))
    gs = FullGmm.load(d / "0.ubm").to_diag()
    n = int(o["num_iters"])
    gmm = FullGmm.load(d / f"{args.start}.ubm")
    for it in range(args.start, n):
        acc = FullAccumulator(gmm, gs, int(o["num_gselect"]), dev, DTYPES[args.dtype])
        for x in chunked(frames, CHUNK):
            acc.add(x)
        gmm = est_full(gmm, acc.stats(), o, it == n - 1, it)
        gmm.save(d / f"{it + 1}.ubm")


# -------------------------------------------------------------------------------------------------- misc

def main(argv: list[str] | None = None) -> int:
    setup(timestamps=True, stream=sys.stdout)   # Kaldi-like "12:34:56 iteration 3: ..." lines
    ap = argparse.ArgumentParser(prog="ubm.py", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)

    def common(p, data=True):
        p.add_argument("--config", default=None, help="YAML config (conf/ivector.yaml)")
        p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                       help="override a key of the step's config section")
        p.add_argument("--device", default="auto")
        p.add_argument("--dtype", choices=list(DTYPES), default="float32",
                       help="precision of the log-likelihood GEMMs (statistics are always float64)")
        if data:
            p.add_argument("--frame-opts", default=None, help="frame_opts file (default: config features)")

    p = sub.add_parser("init-diag")
    common(p)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("data")
    p.add_argument("out")
    p.set_defaults(fn=cmd_init_diag)

    for kind, acc_fn, est_fn, train_fn in (("diag", cmd_acc_diag, cmd_est_diag, cmd_train_diag),
                                           ("full", cmd_acc_full, cmd_est_full, cmd_train_full)):
        p = sub.add_parser(f"acc-{kind}")
        common(p)
        p.add_argument("--part", default=None, help="J/N: the J-th of N per-utterance parts")
        p.add_argument("data")
        p.add_argument("model")
        p.add_argument("gselect_model")
        p.add_argument("out")
        p.set_defaults(fn=acc_fn)

        p = sub.add_parser(f"est-{kind}")
        common(p, data=False)
        p.add_argument("--iter", type=int, default=0)
        p.add_argument("--last", action="store_true", help="last iteration: low-count removal as configured")
        p.add_argument("model")
        p.add_argument("out")
        p.add_argument("accs", nargs="+")
        p.set_defaults(fn=est_fn)

        p = sub.add_parser(f"train-{kind}")
        common(p)
        p.add_argument("data")
        p.add_argument("dir")
        p.add_argument("start", type=int)
        p.set_defaults(fn=train_fn)

    p = sub.add_parser("init-full")
    p.add_argument("diag")
    p.add_argument("out")
    p.set_defaults(fn=cmd_init_full)

    args = ap.parse_args(argv)
    try:
        args.fn(args)
    except (DataError, ValueError) as e:
        print(f"ERROR: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
