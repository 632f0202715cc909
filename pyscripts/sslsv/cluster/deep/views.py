"""Augmented views of i-vectors made in i-vector space, for CAMSAT's ``L_aug`` / ``L_symmetry`` (and
InfoNCE / VICReg) when no i-vectors of augmented audio exist (docs/algorithms.md §2.3 option (a); the
authors' augmentations are unknown, so these are this project's design [I]).

Operations, applied in the order listed in ``types`` (each view and each sample draws its own):

* ``noise``: additive Gaussian noise scaled to the sample's k-th-neighbour distance δ_i (the same δ as
  IMSAT's VAT radius): per-coordinate std ``noise_scale · δ_i / √d``, so the noise *vector* has RMS length
  ``noise_scale · δ_i``. The noise thus moves a point by a fixed fraction of the distance to its
  neighbours whatever the dimension (0.25 matches IMSAT's VAT radius ``prop_eps``); a per-coordinate
  std of ``noise_scale · δ_i`` would move a 400-dim i-vector by 20× that.
* ``mask``: every coordinate is zeroed independently with probability ``mask_prob`` (no 1/(1−p)
  rescaling: with re-normalisation it would cancel anyway).
* ``scale``: multiplication by factors drawn uniformly in ``[1 − r, 1 + r]`` (``scale_range=r``) or
  ``[lo, hi]`` (a pair): one factor per coordinate (``scale_per="feature"``, default: an anisotropic
  distortion) or one per sample (``"sample"``; note that re-normalisation undoes it entirely).
* finally, with ``renormalize`` (for per-sample L2-normalised inputs), every row is scaled back to unit
  L2 norm.

Random numbers come from the ``torch.Generator`` given, drawn on its device (see
:mod:`sslsv.cluster._base`), so a seeded generator gives the same views every time.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

from .._base import rand, randn

TYPES = ("noise", "mask", "scale")


class IvectorAugment:
    """Configurable i-vector-space augmentation (see the module docstring); parameters are stored as
    given."""

    def __init__(self, types: Sequence[str] = TYPES, noise_scale: float = 0.25, mask_prob: float = 0.1,
                 scale_range: float | tuple[float, float] = 0.1, renormalize: bool = True,
                 scale_per: str = "feature") -> None:
        self.types = types
        self.noise_scale = noise_scale
        self.mask_prob = mask_prob
        self.scale_range = scale_range
        self.renormalize = renormalize
        self.scale_per = scale_per
        unknown = [t for t in types if t not in TYPES]
        if unknown:
            raise ValueError(f"unknown augmentation type(s) {unknown} (known: {', '.join(TYPES)})")
        if noise_scale < 0:
            raise ValueError(f"noise_scale must be >= 0, got {noise_scale}")
        if not 0 <= mask_prob < 1:
            raise ValueError(f"mask_prob must be in [0, 1), got {mask_prob}")
        lo, hi = self._scale_bounds()
        if not 0 <= lo <= hi:
            raise ValueError(f"scale_range must give 0 <= low <= high, got {scale_range}")
        if scale_per not in ("feature", "sample"):
            raise ValueError(f"scale_per must be feature or sample, got {scale_per!r}")

    def _scale_bounds(self) -> tuple[float, float]:
        r = self.scale_range
        if isinstance(r, (int, float)):
            return 1.0 - float(r), 1.0 + float(r)
        lo, hi = r
        return float(lo), float(hi)

    def __call__(self, x: torch.Tensor, delta: torch.Tensor | None = None,
                 generator: torch.Generator | None = None) -> torch.Tensor:
        """One augmented copy of ``x`` (B, d); ``delta`` (B,) is each row's neighbour distance (needed by
        ``noise``)."""
        b, d = x.shape
        out = x
        for t in self.types:
            if t == "noise":
                if delta is None:
                    raise ValueError("the 'noise' augmentation needs the neighbour distances delta")
                sigma = self.noise_scale * delta.to(dtype=x.dtype, device=x.device) / d ** 0.5
                out = out + sigma[:, None] * randn((b, d), x, generator)
            elif t == "mask":
                out = out * (rand((b, d), x, generator) >= self.mask_prob).to(x.dtype)
            else:
                lo, hi = self._scale_bounds()
                shape = (b, d) if self.scale_per == "feature" else (b, 1)
                out = out * (lo + (hi - lo) * rand(shape, x, generator))
        if self.renormalize:
            out = F.normalize(out, dim=1)
        return out

    def views(self, x: torch.Tensor, delta: torch.Tensor | None, n_views: int,
              generator: torch.Generator | None = None) -> list[torch.Tensor]:
        """``n_views`` independently augmented copies of ``x``."""
        return [self(x, delta, generator) for _ in range(n_views)]
