#!/usr/bin/env python3
"""Train the speaker-embedding network (ECAPA-TDNN + a margin head) on a (pseudo-)labelled data dir.

    train_embedding.py [--config conf/embed/ecapa_xs.yaml] [--set 'head.name=adaface mixup.kind=lmix']
                       [--device auto|cpu|cuda] <data-dir> <out-dir>

One process trains on the CPU or one GPU; under ``torchrun --nproc_per_node=N`` the same script trains with
DDP (steps/train_embedding.sh launches either). Killed runs resume from the last finished epoch when rerun
with the same arguments. See sslsv.embed.trainer for the output layout.
"""
from __future__ import annotations

import argparse
import os
import shlex
import sys

from sslsv.embed.config import load_embed_config
from sslsv.embed.trainer import train
from sslsv.logs import setup
from sslsv.naming import write_system_record
from sslsv.tables import DataError


def main(argv: list[str] | None = None) -> int:
    setup("train_embedding")
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", default=None, help="YAML config (conf/embed/*.yaml)")
    ap.add_argument("--set", dest="overrides", default="", help="'section.key=value ...' overrides")
    ap.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N [%(default)s]")
    ap.add_argument("--max-epochs", type=int, default=None,
                    help="stop after this many epochs of the schedule (testing interrupted runs)")
    ap.add_argument("data_dir")
    ap.add_argument("out_dir")
    a = ap.parse_args(argv)
    try:
        cfg = load_embed_config(a.config, shlex.split(a.overrides))
        if os.environ.get("RANK", "0") == "0":   # one writer under torchrun
            write_system_record(a.out_dir, a.data_dir, a.config, cfg)
        train(cfg, a.data_dir, a.out_dir, a.device, max_epochs=a.max_epochs)
    except (DataError, ValueError) as e:
        print(f"train_embedding.py: error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
