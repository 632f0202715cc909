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
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from sslsv.device import resolve_device
from sslsv.ivector.extractor_opts import part_utts
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


# ------------------------------------------------------------------------------------ initialisation

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


def cmd_init_full(args) -> None:
    DiagGmm.load(args.diag).to_full().save(args.out)
    log.info(f"init-full: {args.diag} -> {args.out}")


# ------------------------------------------------------------------ EM iterations (diagonal and full)

@dataclass(frozen=True)
class Kind:
    """What differs between the diagonal and the full UBM's EM: config section, model class,
    accumulator, M-step and file extension."""

    section: str
    model: type[DiagGmm] | type[FullGmm]
    accumulator: type[DiagAccumulator] | type[FullAccumulator]
    update: Callable
    ext: str

    def gselect_model(self, path: str | Path) -> DiagGmm:
        """The diagonal model that Gaussian selection uses (a full model's diagonal, as Kaldi does)."""
        g = self.model.load(path)
        return g.to_diag() if isinstance(g, FullGmm) else g


KINDS = {"diag": Kind("diag_ubm", DiagGmm, DiagAccumulator, mle_diag_update, "dubm"),
         "full": Kind("full_ubm", FullGmm, FullAccumulator, mle_full_update, "ubm")}


def cmd_acc(args) -> None:
    k = KINDS[args.kind]
    o = opts_of(args, k.section)
    acc = k.accumulator(k.model.load(args.model), k.gselect_model(args.gselect_model), int(o["num_gselect"]),
                        resolve_device(args.device), DTYPES[args.dtype])
    for x in chunked(frames_of(args, int(o["subsample"]), part_utts(args.data, args.part)), CHUNK):
        acc.add(x)
    st = acc.stats()
    st.save(args.out)
    log.info(f"acc-{args.kind}: {int(st.num_frames)} frames, average log-likelihood {st.avg_loglik:.6f} "
             f"-> {args.out}")


def estimate(k: Kind, gmm: DiagGmm | FullGmm, st: GmmStats, o: dict, last: bool,
             it: int) -> DiagGmm | FullGmm:
    """One M-step, logged as Kaldi's ``gmm-global-est`` / ``fgmm-global-est`` report it."""
    remove = bool(o["remove_low_count_gaussians"]) and last
    new, info = k.update(gmm, st, min_gaussian_weight=float(o["min_gaussian_weight"]),
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


def cmd_est(args) -> None:
    k = KINDS[args.kind]
    new = estimate(k, k.model.load(args.model), sum_stats(args.accs), opts_of(args, k.section), args.last,
                   args.iter)
    new.save(args.out)


def cached_frames(args, subsample: int) -> list[np.ndarray]:
    out = list(frames_of(args, subsample))
    if not out:
        raise DataError(f"{args.data}: no utterance has voiced frames")
    return out


def cmd_train(args) -> None:
    """Iterations ``start`` .. num_iters - 1 in one process, the frames kept in memory (GPU path)."""
    k = KINDS[args.kind]
    o = opts_of(args, k.section)
    dev = resolve_device(args.device)
    d = Path(args.dir)
    frames = cached_frames(args, int(o["subsample"]))
    gs = k.gselect_model(d / f"0.{k.ext}")
    n = int(o["num_iters"])
    gmm = k.model.load(d / f"{args.start}.{k.ext}")
    for it in range(args.start, n):
        acc = k.accumulator(gmm, gs, int(o["num_gselect"]), dev, DTYPES[args.dtype])
        for x in chunked(frames, CHUNK):
            acc.add(x)
        gmm = estimate(k, gmm, acc.stats(), o, it == n - 1, it)
        gmm.save(d / f"{it + 1}.{k.ext}")


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

    for kind in KINDS:
        p = sub.add_parser(f"acc-{kind}")
        common(p)
        p.add_argument("--part", default=None, help="J/N: the J-th of N per-utterance parts")
        p.add_argument("data")
        p.add_argument("model")
        p.add_argument("gselect_model")
        p.add_argument("out")
        p.set_defaults(fn=cmd_acc, kind=kind)

        p = sub.add_parser(f"est-{kind}")
        common(p, data=False)
        p.add_argument("--iter", type=int, default=0)
        p.add_argument("--last", action="store_true", help="last iteration: low-count removal as configured")
        p.add_argument("model")
        p.add_argument("out")
        p.add_argument("accs", nargs="+")
        p.set_defaults(fn=cmd_est, kind=kind)

        p = sub.add_parser(f"train-{kind}")
        common(p)
        p.add_argument("data")
        p.add_argument("dir")
        p.add_argument("start", type=int)
        p.set_defaults(fn=cmd_train, kind=kind)

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
