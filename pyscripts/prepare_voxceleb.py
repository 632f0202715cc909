#!/usr/bin/env python3
"""Prepare VoxCeleb1/2 as Kaldi data dirs <data-root>/<name>_{train,test} with the official trial
lists in Kaldi form; see sslsv.corpora.voxceleb and local/prepare_voxceleb.sh."""
import argparse
import sys

from sslsv.corpora import voxceleb
from sslsv.tables import DataError


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("data_root")
    ap.add_argument("--vox1", required=True, help="VoxCeleb1 root (wav/ or dev/wav + test/wav)")
    ap.add_argument("--vox2", default="", help="VoxCeleb2 root (dev/aac/ or aac/); empty: not used")
    ap.add_argument("--trials-dir", default="", help="where the official lists are (default: --vox1)")
    ap.add_argument("--convert-m4a", choices=["true", "false"], default="false")
    ap.add_argument("--wav-dir", default="",
                    help="converted VoxCeleb2 WAVs (default <data-root>/voxceleb2_wav)")
    ap.add_argument("--nj", type=int, default=1)
    ap.add_argument("--name", default=voxceleb.NAME)
    a = ap.parse_args(argv)
    try:
        line = voxceleb.prepare(a.data_root, a.vox1, a.vox2 or None, a.trials_dir or None,
                                a.convert_m4a == "true", a.wav_dir or None, a.nj, a.name)
    except DataError as e:
        print(f"prepare_voxceleb.py: error: {e}", file=sys.stderr)
        return 1
    print(f"prepare_voxceleb.py: {line}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
