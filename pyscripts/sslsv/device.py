"""One device choice for every torch stage: ``--device auto|cpu|cuda|cuda:N``."""

from __future__ import annotations

import torch


def resolve_device(spec: str = "auto") -> torch.device:
    """Turn a ``--device`` value into a torch device; ``auto`` picks CUDA when available.

    TF32 matmuls are switched off: GMM log-likelihoods are differences of large terms, and TF32's
    10-bit mantissa would change Gaussian selection and posteriors (see docs on numerics).
    """
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    if spec == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(spec)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError(f"--device {spec}: CUDA is not available (torch {torch.__version__})")
    return dev
