#!/usr/bin/env python3
"""The jobs of steps/extract_ivectors.sh (Kaldi's ivector-extract and the speaker-mean pipeline).

  extract_ivectors.py extract [--config C] [--set K=V] [--device D] [--part J/N] [--done-stamp F]
                              <extractor-dir> <data> <ark> <scp>
      i-vectors E[w] − o·e_0 (float32) of the utterances of <data> (part J of N) with
      <extractor-dir>/{final.ie,final.ubm,frame_opts}; prints the mean objf change per frame.
  extract_ivectors.py spk <ivector.scp> <utt2spk> <spk_ivector.ark> <spk_ivector.scp> <num_utts.ark>
      per speaker: mean of the length-normalised utterance i-vectors, length-normalised again.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from sslsv.backend import speaker_ivectors
from sslsv.config import section
from sslsv.ivector.extractor_opts import EXTRACTOR_DEFAULTS, part_utts
from sslsv.logs import setup
from sslsv.stamp import is_done, mark_done
from sslsv.tables import DataError


def main(argv: list[str] | None = None) -> int:
    setup()
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("extract")
    p.add_argument("--config", default=None, help="YAML config with an extractor section")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("--device", default="auto")
    p.add_argument("--part", default=None, help="J/N: the J-th of N per-utterance parts")
    p.add_argument("--done-stamp", default=None, help="skip if it matches the inputs; write it when done")
    p.add_argument("srcdir")
    p.add_argument("data")
    p.add_argument("ark")
    p.add_argument("scp")
    p = sub.add_parser("spk")
    for k in ("ivector_scp", "utt2spk", "ark", "scp", "num_utts"):
        p.add_argument(k)
    a = ap.parse_args(argv)
    try:
        if a.cmd == "spk":
            n = speaker_ivectors(a.ivector_scp, a.utt2spk, a.ark, a.scp, a.num_utts)
            print(f"speaker i-vectors of {n} speakers -> {a.scp}")
            return 0
        o = section(a.config, "extractor", EXTRACTOR_DEFAULTS, a.set)
        src = Path(a.srcdir)
        inputs = [src / "final.ie", src / "final.ubm", src / "frame_opts", Path(a.data) / "feats.scp",
                  Path(a.data) / "vad.scp"]
        opts = f"{sorted(o.items())} part={a.part}"
        if a.done_stamp and Path(a.scp).is_file() and is_done(a.done_stamp, inputs, opts):
            print(f"{a.scp} is up to date ({a.done_stamp}); skipping")
            return 0
        # torch and the models only now: the speaker means and an up-to-date part start fast
        from sslsv.device import resolve_device
        from sslsv.ivector import extractor_jobs as jobs
        from sslsv.ivector.extractor import IvectorExtractor
        from sslsv.ivector.frames import FrameOptions
        from sslsv.ivector.gmm import FullGmm
        dev = resolve_device(a.device)
        ie = IvectorExtractor.load(src / "final.ie", dev)
        ubm = FullGmm.load(src / "final.ubm")
        fo = FrameOptions.load(src / "frame_opts")
        n, change = jobs.extract(ie, ubm, a.data, fo, a.ark, a.scp, int(o["num_gselect"]),
                                 float(o["min_post"]), float(o["posterior_scale"]),
                                 float(o["acoustic_weight"]), float(o["max_count"]), int(o["batch_size"]),
                                 part_utts(a.data, a.part))
        print(f"extracted {n} i-vectors (dim {ie.ivector_dim}) -> {a.scp}; "
              f"mean objf change per frame {change:.4f}")
        if a.done_stamp:
            mark_done(a.done_stamp, inputs, opts)
    except DataError as e:
        print(f"extract_ivectors.py: ERROR: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
