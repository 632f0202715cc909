"""Speed perturbation of training chunks by polyphase resampling, in the worker, without a subprocess.

``speed F`` (pitch and tempo both scaled by ``F``, length ``N/F``) is resampling by the rational factor
``up/down = 1/F``: 0.9 → 10/9, 1.1 → 10/11, done by ``scipy.signal.resample_poly`` (a Kaiser-window
(β 5) low-pass of ``2·10·max(up, down) + 1`` taps at cut-off ``1/max(up, down)``; ``ceil(N·up/down)``
samples). About 1 ms for a 2.3-s window on one core, against 5-12 ms for a ``sox`` subprocess per item.
scipy's single-threaded C code gives the same samples whatever the number of threads, so an item stays a
function of (seed, epoch, index) with or without DataLoader workers (a torch convolution would not: its
summation order depends on the thread count).

Stage 2's augmented data dir keeps ``sox speed`` (:func:`sslsv.augment.speed_perturb`), as Kaldi's
``perturb_data_dir_speed.sh`` does; both have the same pass band, sox's transition band is steeper.
"""

from __future__ import annotations

from fractions import Fraction

import numpy as np
from scipy.signal import resample_poly


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


def speed(x: np.ndarray, factor: float) -> np.ndarray:
    """``x`` (float, int16 scale) at speed ``factor``: ``out_length(len(x), factor)`` samples, float64."""
    x = np.asarray(x, dtype=np.float64)
    if factor == 1.0:
        return x
    up, down = up_down(factor)
    return resample_poly(x, up, down)
