"""Learning-rate and margin schedules as pure functions of the global iteration.

Both are set before every forward from the iteration count alone (WeSpeaker's convention), so resuming a
run needs nothing but the iteration number: there is no scheduler state to lose or restore wrongly.
"""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True)
class LrSchedule:
    """Linear warm-up from 0 over ``warmup_iters``, then exponential decay from ``lr`` to ``final_lr`` over
    the whole run (WeSpeaker ``ExponentialDecrease``, docs/network.md §2.3), all times ``scale``
    (``world_size * batch_per_gpu / ref_batch``). ``kind="constant"`` keeps ``lr * scale`` after warm-up."""

    lr: float
    final_lr: float
    total_iters: int
    warmup_iters: int = 0
    scale: float = 1.0
    kind: str = "exp"

    def __post_init__(self) -> None:
        if self.kind not in ("exp", "constant"):
            raise ValueError(f"unknown lr schedule {self.kind!r} (exp | constant)")
        if self.lr <= 0 or self.final_lr <= 0 or self.total_iters <= 0:
            raise ValueError("lr, final_lr and total_iters must be positive")

    def __call__(self, i: int) -> float:
        coeff = self.scale * (i / self.warmup_iters if i < self.warmup_iters else 1.0)
        if self.kind == "constant":
            return coeff * self.lr
        return coeff * self.lr * math.exp(i / self.total_iters * math.log(self.final_lr / self.lr))


@dataclass(frozen=True)
class MarginSchedule:
    """Margin ``initial`` before ``start_iter``, ``final`` from ``fix_iter`` on, and in between either a
    linear ramp or WeSpeaker's concave "exp" ramp ρ = 1 − 0.001^progress (docs/network.md §2.4)."""

    initial: float
    final: float
    start_iter: int
    fix_iter: int
    kind: str = "exp"

    def __post_init__(self) -> None:
        if self.kind not in ("exp", "linear"):
            raise ValueError(f"unknown margin ramp {self.kind!r} (exp | linear)")
        if self.fix_iter < self.start_iter:
            raise ValueError(f"margin fix_iter {self.fix_iter} precedes start_iter {self.start_iter}")

    def __call__(self, i: int) -> float:
        if i < self.start_iter:
            return self.initial
        if i >= self.fix_iter:
            return self.final
        progress = (i - self.start_iter) / (self.fix_iter - self.start_iter)
        if self.kind == "linear":
            rho = progress
        else:
            rho = 1.0 - math.exp(progress * math.log(1e-3 / (1 + 1e-6)))
        return self.initial + (self.final - self.initial) * rho
