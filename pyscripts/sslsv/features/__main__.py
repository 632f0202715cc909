"""``python3 -m sslsv.features mfcc-config FILE`` / ``vad-config FILE``: read and check a Kaldi option file
before a step starts any work (errors name ``file:line``). ``mfcc-config`` prints what steps/make_mfcc.sh
needs: the sample rate, the window length in samples and the frame shift in seconds."""

from __future__ import annotations

import argparse
import sys

from ..tables import DataError
from .kaldi_options import read_mfcc_config, read_vad_config


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python3 -m sslsv.features", description=__doc__)
    sub = ap.add_subparsers(dest="cmd", required=True)
    sub.add_parser("mfcc-config", help="check; print rate window_samples frame_shift_s").add_argument("file")
    sub.add_parser("vad-config", help="check a compute-vad option file").add_argument("file")
    a = ap.parse_args(argv)
    try:
        if a.cmd == "mfcc-config":
            c = read_mfcc_config(a.file)
            print(int(c.sample_frequency), c.window_size_samples, c.frame_shift / 1000)
        else:
            read_vad_config(a.file)
    except DataError as e:
        print(f"ERROR: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
