"""How long, with which batches and with how big a network the deep clustering methods train, as pure
functions of the data size N and the number of clusters C (docs/clustering.md, "Training schedule").

The papers fix an epoch count for 1.09 M VoxCeleb2 i-vectors: 150 epochs of batches of 10,240, about
16,000 optimiser steps. Copied in epochs to 2,000 vectors, the same setting is 150 steps (one batch per
epoch), too few for any head to leave its initial state. The default schedule therefore fixes the number
of **optimiser steps**; the batch follows N (at least ``batches_per_epoch`` batches per pass, at least
``min_batch_size`` vectors, at most ``batch_size``) and the number of epochs follows from both. The papers'
setting is the special case ``steps: 0`` (train ``epochs`` epochs) with ``batches_per_epoch: 1`` (one batch
of min(10,240, N) when N is small), as ``conf/cluster/schedule/paper.yaml`` sets it.

Learning rate: in the papers' epoch mode ``lr · lr_decay^epoch`` (0.01 × 0.996 per epoch); in step mode a
per-step exponential decay from ``lr`` to ``lr · lr_final`` over the run, so the decay per step is fixed by
the config whatever N is.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from ...tables import DataError

CURVE_ROWS = 150


@dataclass(frozen=True)
class Schedule:
    """A resolved training schedule: ``epochs`` passes of ``batches_per_epoch`` full batches of
    ``batch_size`` vectors (the remainder of each permutation is dropped), ``steps`` optimiser steps."""

    batch_size: int
    batches_per_epoch: int
    epochs: int
    steps: int
    lr: float
    lr_decay: float     # per epoch (epoch mode); 1.0 in step mode
    lr_final: float     # fraction of lr at the last step (step mode); 1.0 in epoch mode
    by_steps: bool

    @property
    def row_every(self) -> int:
        """Epochs per curve row and checkpoint: every epoch up to 150 epochs (the papers' run logs each
        of its 150), then as many as keep the curve at about 150 rows (10,000 steps on 2,000 vectors are
        1,250 epochs of 8 batches; evaluating and checkpointing each would cost more than training)."""
        return max(1, math.ceil(self.epochs / CURVE_ROWS))

    def lr_at(self, step: int) -> float:
        """Learning rate of optimiser step ``step`` (0-based)."""
        if self.by_steps:
            return self.lr * self.lr_final ** (step / max(1, self.steps - 1))
        return self.lr * self.lr_decay ** (step // self.batches_per_epoch)


def plan(n: int, *, steps: int, epochs: int, batch_size: int, min_batch_size: int, batches_per_epoch: int,
         lr: float, lr_decay: float, lr_final: float) -> Schedule:
    """The schedule for N vectors.

    batch = min(batch_size, N, max(min_batch_size, N // batches_per_epoch)); with ``steps`` > 0 the run has
    exactly ``steps`` optimiser steps (the last epoch may be partial), otherwise ``epochs`` full epochs.
    """
    if n < 2:
        raise DataError(f"need at least 2 vectors to cluster, got {n}")
    if steps < 0 or (steps == 0 and epochs < 1):
        raise DataError(f"steps must be > 0, or 0 with epochs >= 1 (got steps={steps}, epochs={epochs})")
    if batch_size < 2 or min_batch_size < 2 or batches_per_epoch < 1:
        raise DataError("batch_size and min_batch_size must be >= 2 and batches_per_epoch >= 1")
    bs = min(batch_size, n, max(min_batch_size, n // batches_per_epoch))
    per_epoch = max(1, n // bs)
    if steps > 0:
        return Schedule(bs, per_epoch, math.ceil(steps / per_epoch), steps, lr, 1.0, lr_final, True)
    return Schedule(bs, per_epoch, epochs, epochs * per_epoch, lr, lr_decay, 1.0, False)


# The head rule (docs/clustering.md, "Training schedule, head and restarts"): rows (minimum N, minimum
# N / C, hidden widths), first match wins. Where a row holds, `hidden: auto` trains a linear head and that
# hidden head and keeps the one of lower unsupervised objective; elsewhere it trains a linear head only.
# Measured with IMSAT: at about 20 vectors per cluster every hidden layer memorises a balanced partition
# with a *lower* objective (speechocean762, 3,000 steps: linear 0.78, 256 0.61, 1200-1200 0.54;
# simulator, N 10k, C 500: linear 0.59, 512 0.06), so there the objective cannot choose and the rule
# gives linear; from 60 per cluster the objective picks the better head (simulator, N 10k, C 167: 512
# at objective −8.62 and ACC 0.79 over linear at −7.90 and 0.65; N 100k, C 556, 2,000 steps: linear at
# −8.95 and 0.63 over a 512 head still at the uniform start, −7.90 and 0.03). The papers' 1200-1200 is
# the <method>_paper configs'.
HEAD_RULE = ((10_000, 50, "512"),)


def auto_heads(n: int, n_clusters: int) -> tuple[str, ...]:
    """The heads ``hidden: auto`` trains for N vectors and C clusters: a linear head (``""``), and the
    hidden widths of the first :data:`HEAD_RULE` row whose minimum N and minimum N / C both hold."""
    for min_n, min_per_cluster, hidden in HEAD_RULE:
        if n >= min_n and n / n_clusters >= min_per_cluster:
            return ("", hidden)
    return ("",)


def auto_vat_k(n: int, n_clusters: int) -> int:
    """``vat_k: auto``: half the mean cluster size N / C, at least 1 and at most N − 1, so that the VAT
    radius (``vat_eps`` × the k-th neighbour distance) follows the spacing of same-cluster points rather
    than a fixed neighbour count."""
    return int(min(n - 1, max(1, round(0.5 * n / n_clusters))))
