#!/usr/bin/env python3
"""The jobs of steps/train_ivector_extractor.sh (Kaldi's ivector-extractor-{init,acc-stats,sum-accs,est}).

  train_ivector_extractor.py init  [--config C] [--set K=V] [--seed N] <final.ubm> <0.ie>
  train_ivector_extractor.py post  [--config C] [--set K=V] [--device D] [--frame-opts F] [--part J/N]
                                   <final.ubm> <data> <post.npz>
  train_ivector_extractor.py acc   [--config C] [--set K=V] [--device D] [--frame-opts F] [--part J/N]
                                   <k.ie> <data> <post.npz> <acc.npz>
  train_ivector_extractor.py est   [--config C] [--set K=V] [--device D] --iter k <k.ie> <k+1.ie> <acc.npz>...
  train_ivector_extractor.py train [--config C] [--set K=V] [--device D] [--frame-opts F]
                                   <data> <post.npz> <dir>        (all remaining iterations, one process)
  train_ivector_extractor.py config-value [--config C] [--set K=V] <key>

Options of the extractor section of --config (conf/ivector.yaml) can be overridden with --set key=value.
"""

from __future__ import annotations

import argparse
import os
import sys

from sslsv.config import section
from sslsv.ivector.extractor_opts import EXTRACTOR_DEFAULTS, part_utts
from sslsv.logs import setup
from sslsv.tables import DataError


def main(argv: list[str] | None = None) -> int:
    setup()
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)

    def common(p: argparse.ArgumentParser, device: bool = True, frames: bool = True) -> None:
        p.add_argument("--config", default=None, help="YAML config with an extractor section")
        p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                       help="override a key of the extractor section")
        if device:
            p.add_argument("--device", default="auto")
        if frames:
            p.add_argument("--frame-opts", default=None, help="frame_opts file of the UBM dir")
            p.add_argument("--part", default=None, help="J/N: the J-th of N per-utterance parts")

    p = sub.add_parser("init")
    common(p, device=False, frames=False)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("ubm")
    p.add_argument("out")
    p = sub.add_parser("post")
    common(p)
    p.add_argument("--keep-existing", action="store_true",
                   help="do nothing if the output exists (it is written atomically: a resumed job)")
    p.add_argument("ubm")
    p.add_argument("data")
    p.add_argument("out")
    p = sub.add_parser("acc")
    common(p)
    p.add_argument("model")
    p.add_argument("data")
    p.add_argument("post")
    p.add_argument("out")
    p = sub.add_parser("est")
    common(p, frames=False)
    p.add_argument("--iter", type=int, required=True)
    p.add_argument("model")
    p.add_argument("out")
    p.add_argument("accs", nargs="+")
    p = sub.add_parser("train")
    common(p)
    p.add_argument("data")
    p.add_argument("dir")
    p.add_argument("posts", nargs="+", help="the posterior files of every part")
    p = sub.add_parser("config-value")
    common(p, device=False, frames=False)
    p.add_argument("keys", nargs="+")
    a = ap.parse_args(argv)
    try:
        o = section(a.config, "extractor", EXTRACTOR_DEFAULTS, a.set)
        if a.cmd == "config-value":
            bad = [k for k in a.keys if k not in o]
            if bad:
                raise DataError(f"unknown extractor option {bad[0]!r}")
            print(" ".join(str(o[k]) for k in a.keys))
            return 0
        if a.cmd == "post" and a.keep_existing and os.path.isfile(a.out):
            print(f"{a.out} exists; kept")
            return 0
        # torch and the models only now: option queries from the shell stay fast
        from sslsv.device import resolve_device
        from sslsv.ivector import extractor_jobs as jobs
        from sslsv.ivector.extractor import IvectorExtractor
        from sslsv.ivector.frames import FrameOptions
        from sslsv.ivector.gmm import FullGmm
        fo = None
        if getattr(a, "frame_opts", None):
            fo = FrameOptions.load(a.frame_opts)
        elif a.cmd in ("post", "acc", "train"):
            fo = FrameOptions.from_config(a.config)
        dev = resolve_device(a.device) if hasattr(a, "device") else None
        if a.cmd == "init":
            ie = IvectorExtractor.init_from_ubm(FullGmm.load(a.ubm), int(o["ivector_dim"]), seed=a.seed)
            ie.save(a.out)
            print(f"initialised {a.out}: {ie.num_gauss} Gaussians, feature dim {ie.feat_dim}, "
                  f"i-vector dim {ie.ivector_dim}, prior offset {ie.prior_offset}")
        elif a.cmd == "post":
            n = jobs.compute_posteriors(FullGmm.load(a.ubm), a.data, fo, a.out, int(o["num_gselect"]),
                                        float(o["min_post"]), float(o["posterior_scale"]), dev,
                                        part_utts(a.data, a.part))
            print(f"posteriors of {n} utterances written to {a.out}")
        elif a.cmd == "acc":
            ie = IvectorExtractor.load(a.model, dev)
            posts = jobs.load_posteriors(a.post)
            acc = jobs.accumulate(ie, a.data, fo, posts, int(o["batch_size"]))
            acc.save(a.out)
            print(f"accumulated {acc.num_utts:.0f} utterances, {float(acc.gamma.sum()):.0f} frames, "
                  f"auxf/frame {acc.auxf / max(float(acc.gamma.sum()), 1e-300):.6f} -> {a.out}")
        elif a.cmd == "est":
            print(jobs.estimate(a.model, a.accs, a.out, a.iter, dev, float(o["gaussian_min_count"]),
                                float(o["variance_floor_factor"])))
        elif a.cmd == "train":
            jobs.train_in_process(a.dir, a.data, fo, a.posts, int(o["num_iters"]), dev, int(o["batch_size"]),
                                  float(o["gaussian_min_count"]), float(o["variance_floor_factor"]))
    except DataError as e:
        print(f"train_ivector_extractor.py: ERROR: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
