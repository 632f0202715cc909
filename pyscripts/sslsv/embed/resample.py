"""Speed perturbation of training chunks by polyphase resampling, batched in torch on any device.

``speed F`` (pitch and tempo both scaled by ``F``, length ``N/F``) is resampling by the rational factor
``up/down = 1/F``: 0.9 → 10/9, 1.1 → 10/11. The filter is scipy's ``resample_poly`` design (a Kaiser-window
(β 5) low-pass of ``2·10·max(up, down) + 1`` taps at cut-off ``1/max(up, down)``, gain ``up``) and the
output is exactly ``scipy.signal.resample_poly(x, up, down)``:
``y[m] = Σ_j x[j]·h[m·down − j·up + H]`` (``H`` the filter's half-length), ``ceil(N·up/down)`` samples.
It is computed as one strided ``conv1d`` with ``up`` output channels (the filter's phases), so a batch of
chunks costs one convolution instead of a ``sox`` subprocess per item (about 5-12 ms each).

Stage 2's augmented data dir keeps ``sox speed`` (:func:`sslsv.augment.speed_perturb`), as Kaldi's
``perturb_data_dir_speed.sh`` does; both have the same pass band, sox's transition band is steeper.
"""

from __future__ import annotations

import functools
import math
from fractions import Fraction

import numpy as np
import torch
from scipy.signal import firwin


def up_down(factor: float) -> tuple[int, int]:
    """``(up, down)`` of speed ``factor`` (the resampling ratio ``1/factor`` in lowest terms)."""
    r = Fraction(1.0 / factor).limit_denominator(100)
    if abs(float(r) - 1.0 / factor) > 1e-9:
        raise ValueError(f"speed factor {factor} is not a ratio of small integers")
    return r.numerator, r.denominator


def out_length(n: int, factor: float) -> int:
    """Samples of ``n`` samples after speed ``factor``: ``ceil(n·up/down)``."""
    up, down = up_down(factor)
    return -(-n * up // down)


@functools.lru_cache(maxsize=16)
def _bank(up: int, down: int) -> tuple[np.ndarray, int, int]:
    """The polyphase kernel ``(up, 1, K)`` (float64), the left padding and the half-length ``H``.

    Output ``m = q·up + p`` reads ``x[q·down + j0_p − t]·h[r_p + t·up]`` for ``t = 0..T−1``, with
    ``j0_p = (p·down + H) // up`` and ``r_p = (p·down + H) % up``. As a cross-correlation over the
    input padded by ``P`` on the left (``P = max j0 ... `` taps back), every phase is a row of one kernel.
    """
    half = 10 * max(up, down)
    h = firwin(2 * half + 1, 1.0 / max(up, down), window=("kaiser", 5.0)) * up
    taps = math.ceil(h.size / up)
    hp = np.zeros(taps * up)
    hp[:h.size] = h
    j0 = np.array([(p * down + half) // up for p in range(up)])
    r = np.array([(p * down + half) % up for p in range(up)])
    lo = int(j0.min()) - (taps - 1)             # lowest input offset any phase reads
    k = int(j0.max()) - lo + 1
    bank = np.zeros((up, 1, k))
    for p in range(up):
        for t in range(taps):
            bank[p, 0, j0[p] - t - lo] = hp[r[p] + t * up]
    return bank, -lo, half


def speed(x: torch.Tensor, factor: float) -> torch.Tensor:
    """``x`` (``(B, N)`` or ``(N,)``) at speed ``factor``: ``(B, ceil(N·up/down))``, the dtype and device
    of ``x`` (float32 or float64), equal to ``scipy.signal.resample_poly(x, up, down)`` to rounding."""
    if factor == 1.0:
        return x
    up, down = up_down(factor)
    bank, pad, _ = _bank(up, down)
    one = x.dim() == 1
    xb = x.reshape(1, -1) if one else x
    n = xb.shape[-1]
    m = -(-n * up // down)
    q = -(-m // up)                              # outputs per phase
    w = torch.as_tensor(bank, dtype=xb.dtype, device=xb.device)
    need = (q - 1) * down + w.shape[-1]          # padded input the last output reads
    xp = torch.nn.functional.pad(xb[:, None, :], (pad, max(0, need - pad - n)))
    y = torch.nn.functional.conv1d(xp, w, stride=down)[:, :, :q]   # (B, up, q)
    y = y.transpose(1, 2).reshape(xb.shape[0], q * up)[:, :m]
    return y[0] if one else y
