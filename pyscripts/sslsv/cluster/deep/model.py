"""The clustering network of IMSAT / CIMC / CAMSAT: an MLP d-S-...-S-C with batch norm and ReLU on every
hidden layer and a linear output giving the cluster logits (softmax applied by the losses).

Initialisation follows IMSAT's Chainer code (docs/algorithms.md §3.1): weights ~ N(0, (wscale/√fan_in)²),
zero biases, wscale 0.1 for the hidden layers and 1e-4 for the output layer so the first predictions
are almost uniform over the clusters.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence

import torch
from torch import nn


def parse_hidden(hidden: str | int | Sequence[int]) -> list[int]:
    """Hidden widths from ``"1200-1200"`` (IMSAT's ``--hidden_list``), an int or a list; ``""``,
    ``"linear"``, ``"none"`` or 0 give no hidden layer (a linear head)."""
    if isinstance(hidden, int):
        return [hidden] if hidden > 0 else []
    if isinstance(hidden, str):
        if hidden.strip().lower() in ("", "linear", "none", "0"):
            return []
        try:
            widths = [int(h) for h in hidden.replace(",", "-").split("-") if h.strip()]
        except ValueError:
            raise ValueError(f"hidden must be widths like '1200-1200', 'linear' or 'auto', got {hidden!r}"
                             ) from None
    else:
        widths = [int(h) for h in hidden]
    if any(w < 1 for w in widths):
        raise ValueError(f"hidden widths must be >= 1, got {hidden!r}")
    return widths


class ClusterMLP(nn.Module):
    """x (B, d) -> cluster logits (B, C)."""

    def __init__(self, in_dim: int, n_clusters: int, hidden: Sequence[int] = (1200, 1200),
                 hidden_scale: float = 0.1, out_scale: float = 1e-4, bn_momentum: float = 0.1) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        d = in_dim
        for h in hidden:
            lin = nn.Linear(d, h)
            _init(lin, hidden_scale)
            layers += [lin, nn.BatchNorm1d(h, momentum=bn_momentum), nn.ReLU()]
            d = h
        self.body = nn.Sequential(*layers)
        self.out = nn.Linear(d, n_clusters)
        _init(self.out, out_scale)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(self.body(x))


def _init(lin: nn.Linear, wscale: float) -> None:
    with torch.no_grad():
        lin.weight.normal_(0.0, wscale / lin.in_features ** 0.5)
        lin.bias.zero_()


@contextlib.contextmanager
def frozen_bn_stats(model: nn.Module) -> Iterator[None]:
    """Forward passes that normalise with the current batch's statistics without updating the running
    averages (IMSAT's perturbed passes): BN momentum set to 0 for the duration."""
    bns = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    saved = [(m.momentum, m.num_batches_tracked.clone()) for m in bns]
    for m in bns:
        m.momentum = 0.0
    try:
        yield
    finally:
        for m, (mom, nbt) in zip(bns, saved, strict=True):
            m.momentum = mom
            m.num_batches_tracked.copy_(nbt)
