#!/usr/bin/env python3
r"""Convert a Kaldi GMM text dump into our .npz model (format: sslsv.ivector.gmm):

  convert_kaldi_gmm.py <kaldi-text-model> <out.npz>
  e.g. gmm-global-copy --binary=false exp/diag_ubm/final.dubm final.dubm.txt
       convert_kaldi_gmm.py final.dubm.txt exp/diag_ubm/final.dubm
       fgmm-global-copy --binary=false exp/full_ubm/final.ubm - \
         | convert_kaldi_gmm.py - exp/full_ubm/final.ubm

<DiagGMM> becomes a diagonal model (.dubm), <FullGMM> a full one (.ubm); '-' reads stdin.
"""

import sys

from sslsv.ivector.kaldi_gmm import read_kaldi_gmm_text
from sslsv.tables import DataError


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 2 or argv[0] in ("-h", "--help"):
        print(__doc__, file=sys.stderr)
        return 1
    src, out = argv
    try:
        if src == "-":
            text = sys.stdin.read()
        else:
            with open(src, encoding="latin-1") as f:
                text = f.read()
        gmm = read_kaldi_gmm_text(text, where=src)
        gmm.save(out)
    except (OSError, DataError) as e:
        print(f"ERROR: {e}", file=sys.stderr)
        return 1
    kind = "diagonal" if gmm.__class__.__name__ == "DiagGmm" else "full-covariance"
    print(f"convert_kaldi_gmm.py: wrote {out} ({kind}, {gmm.num_gauss} Gaussians, dim {gmm.dim})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
