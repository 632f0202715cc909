"""One device choice for every torch stage: ``--device auto|cpu|cuda|cuda:N``."""

from __future__ import annotations

import sys

import torch

from .tables import DataError


def resolve_device(spec: str = "auto") -> torch.device:
    """Turn a ``--device`` value into a torch device; ``auto`` picks CUDA when available. A device this
    machine lacks is a DataError (one line on the console, before any work), not a traceback.

    TF32 matmuls are switched off: GMM log-likelihoods are differences of large terms, and TF32's
    10-bit mantissa would change Gaussian selection and posteriors (see docs on numerics).
    """
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    if spec == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(spec)
    except RuntimeError:
        raise DataError(f"--device {spec!r}: expected auto, cpu, cuda or cuda:N") from None
    if dev.type not in ("cpu", "cuda"):
        raise DataError(f"--device {spec!r}: expected auto, cpu, cuda or cuda:N")
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise DataError(f"--device {spec}: CUDA is not available (torch {torch.__version__})")
    if dev.type == "cuda" and dev.index is not None and dev.index >= torch.cuda.device_count():
        raise DataError(f"--device {spec}: this machine has {torch.cuda.device_count()} CUDA device(s)")
    return dev


def main(argv: list[str] | None = None) -> int:
    """``python3 -m sslsv.device DEVICE``: exit 0 when this machine has the device, else print why."""
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python3 -m sslsv.device auto|cpu|cuda|cuda:N", file=sys.stderr)
        return 2
    try:
        resolve_device(args[0])
    except DataError as e:
        print(e, file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
