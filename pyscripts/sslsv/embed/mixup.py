"""i-mix / l-mix for (pseudo-)label training (docs/network.md §4).

One draw per batch: λ_i ~ Beta(α, α) per sample, folded to λ_i ← max(λ_i, 1 − λ_i) so that the sample's own
label always dominates, and one permutation π of the batch. The same (π, λ) mixes a tensor at one chosen depth
of the network (``layer``: "input" = i-mix, "stem" / "mfa" / "pooled" = l-mix, see ``EcapaTdnn.forward``) and
weights the two per-sample losses. Both draws come from a numpy ``Generator`` so a run is reproducible from
its own seed and independent of torch's global RNG state.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

MIX_LAYERS = ("input", "stem", "mfa", "pooled")


@dataclass
class MixSpec:
    """Mixing point (``layer``), each sample's partner (``perm``, (B,) long), its weight (``lam``, (B,))."""

    layer: str
    perm: Tensor
    lam: Tensor

    def __post_init__(self) -> None:
        if self.layer not in MIX_LAYERS:
            raise ValueError(f"mix layer {self.layer!r}: expected one of {', '.join(MIX_LAYERS)}")
        if self.perm.dim() != 1 or self.lam.shape != self.perm.shape:
            raise ValueError(f"MixSpec: perm {tuple(self.perm.shape)} and lam {tuple(self.lam.shape)} "
                             "must both have shape (B,)")


def sample_mix(batch: int, alpha: float, layer: str, rng: np.random.Generator,
               device: torch.device | str | None = None) -> MixSpec:
    """Draw λ (Beta(α, α), folded to ≥ 0.5) and then a permutation for a batch of ``batch`` samples."""
    if batch < 1:
        raise ValueError(f"sample_mix: batch must be >= 1, got {batch}")
    if not alpha > 0:
        raise ValueError(f"sample_mix: alpha must be > 0, got {alpha}")
    lam = rng.beta(alpha, alpha, size=batch)
    lam = np.maximum(lam, 1.0 - lam)
    perm = rng.permutation(batch)
    return MixSpec(layer, torch.as_tensor(perm, dtype=torch.long, device=device),
                   torch.as_tensor(lam, dtype=torch.float32, device=device))


def _lam_like(lam: Tensor, x: Tensor) -> Tensor:
    """λ as a (B, 1, ..., 1) tensor in x's dtype and device, broadcasting over x's trailing dims."""
    return lam.to(device=x.device, dtype=x.dtype).reshape(-1, *([1] * (x.dim() - 1)))


def mix(x: Tensor, spec: MixSpec) -> Tensor:
    """λ_i x_i + (1 − λ_i) x_π(i), along the batch dim of ``x``.

    Written as x + (1 − λ)(x[π] − x), which is the same function but returns x bit-exactly when π is the
    identity or λ = 1 (the unmixed forward is then reproduced exactly, not to rounding).
    """
    if x.shape[0] != spec.perm.shape[0]:
        raise ValueError(f"mix: tensor batch {x.shape[0]} != MixSpec batch {spec.perm.shape[0]}")
    perm = spec.perm.to(x.device)
    return x + (1.0 - _lam_like(spec.lam, x)) * (x[perm] - x)


def mixed_loss(per_sample_a: Tensor, per_sample_b: Tensor, lam: Tensor) -> Tensor:
    """Batch mean of λ L_a + (1 − λ) L_b (per-sample losses against y and y_π); exact L_a when L_b = L_a."""
    if per_sample_a.shape != per_sample_b.shape or per_sample_a.shape != lam.shape:
        raise ValueError(f"mixed_loss: shapes {tuple(per_sample_a.shape)}, {tuple(per_sample_b.shape)}, "
                         f"{tuple(lam.shape)} must all be (B,)")
    lam = lam.to(device=per_sample_a.device, dtype=per_sample_a.dtype)
    return (per_sample_a + (1.0 - lam) * (per_sample_b - per_sample_a)).mean()
