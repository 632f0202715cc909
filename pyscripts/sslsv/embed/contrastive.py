"""NT-Xent with a margin on the positive pair (NT-Xent-AM) for label-free, SimCLR-style training of the
speaker network (Lepage & Dehak, "Experimenting with Additive Margins for Contrastive Self-Supervised
Speaker Verification", Interspeech 2023; "Additive Margin in Contrastive Self-Supervised Frameworks to
Learn Discriminative Speaker Representations", Odyssey 2024; docs/network.md).

A batch holds V ≥ 2 views (random chunks, augmented independently) of each of B utterances. Every
embedding is L2-normalised and compared by cosine. For an anchor a of utterance i and one positive p (another
view of i), with s = 1 / temperature::

    ℓ(a, p) = −log  exp(s·f(cos(a, p))) / ( exp(s·f(cos(a, p))) + Σ_{n ∈ N(a)} exp(s·cos(a, n)) )

where f is the margin, applied to the positive only: ``am`` f(c) = c − m (additive margin, CosFace-like),
``aam`` f(c) = cos(θ + m) (additive angular margin, ArcFace-like,
:func:`~sslsv.embed.margins.angular_margin`), m = 0 the plain NT-Xent. The loss is the mean of ℓ over
every (anchor, positive) pair.

- **asymmetric** (SimCLR's loss as the papers' baseline writes it): anchors are the first views; the
  candidates are the other views; N(a) = the other views of the other B − 1 utterances.
- **symmetric** (the papers' "symmetric contrastive loss"): every view is an anchor in turn; the
  candidates are all V·B embeddings but the anchor itself; N(a) = every view of the other utterances
  (V·(B − 1) negatives, both views' for V = 2).

Other views of the anchor's own utterance never count as negatives. The papers' setting: temperature 0.03
(scale 33.3), m = 0.1, symmetric; their reference implementation is the ``sslsv`` toolkit (SimCLR-Margins).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .margins import AAM_FALLBACKS, COS_EPS, angular_margin, work_dtype

MARGIN_TYPES = ("am", "aam")


def _check(temperature: float, margin: float, margin_type: str) -> None:
    if not temperature > 0:
        raise ValueError(f"NT-Xent: temperature must be > 0, got {temperature}")
    if margin_type not in MARGIN_TYPES:
        raise ValueError(f"NT-Xent: margin_type {margin_type!r}; valid: {', '.join(MARGIN_TYPES)}")
    if not 0 <= margin < (math.pi if margin_type == "aam" else 2.0):
        raise ValueError(f"NT-Xent: margin {margin} out of range for {margin_type}")


def nt_xent(z: Tensor, temperature: float = 0.03, margin: float = 0.0, margin_type: str = "am",
            symmetric: bool = True, fallback: str = "wespeaker", reduction: str = "mean") -> Tensor:
    """NT-Xent(-AM / -AAM) of views z (B, V, D) of B utterances: the mean over every (anchor, positive)
    pair (module docstring), or with ``reduction="none"`` the mean over each utterance's pairs, (B,)
    (every utterance has as many pairs, so their mean is the scalar loss). At least fp32, autocast off."""
    _check(temperature, margin, margin_type)
    if z.dim() != 3 or z.shape[0] < 2 or z.shape[1] < 2:
        raise ValueError(f"NT-Xent: expected views (B >= 2, V >= 2, D), got {tuple(z.shape)}")
    if fallback not in AAM_FALLBACKS:
        raise ValueError(f"NT-Xent: fallback {fallback!r}; valid: {', '.join(AAM_FALLBACKS)}")
    if reduction not in ("mean", "none"):
        raise ValueError(f"NT-Xent: reduction must be mean or none, got {reduction!r}")
    b, v, _ = z.shape
    with torch.autocast(z.device.type, enabled=False):
        cos, same, pos, a_utt = _pairs(z, symmetric)
        scale = 1.0 / temperature
        neg_lse = torch.logsumexp((scale * cos).masked_fill(same, -math.inf), dim=1)   # (A,)
        c_pos = cos[pos]                                                               # (P,) row-major
        f_pos = c_pos - margin if margin_type == "am" else angular_margin(c_pos, margin, fallback)
        logit = scale * f_pos
        rows = pos.nonzero()[:, 0]
        pair_loss = torch.logaddexp(logit, neg_lse[rows]) - logit
        if reduction == "mean":
            return pair_loss.mean()
        utt = a_utt[rows]
        per_utt = torch.zeros(b, dtype=pair_loss.dtype, device=z.device).index_add_(0, utt, pair_loss)
        return per_utt / torch.bincount(utt, minlength=b).to(per_utt.dtype)


def _pairs(z: Tensor, symmetric: bool) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Cosines anchors × candidates (A, K) of the L2-normalised views, the masks "same utterance" and
    "positive" (same utterance, other view), and each anchor's utterance."""
    b, v, _ = z.shape
    e = F.normalize(z.to(work_dtype(z)), dim=2)
    utt = torch.arange(b, device=z.device)
    cand = e.reshape(b * v, -1)                       # row k = view k % v of utterance k // v
    cand_utt = utt.repeat_interleave(v)
    cand_view = torch.arange(v, device=z.device).repeat(b)
    if symmetric:
        anchors, a_utt, a_view = cand, cand_utt, cand_view
    else:                                             # anchors: first views; candidates: the others
        anchors, a_utt, a_view = e[:, 0], utt, torch.zeros_like(utt)
        keep = cand_view > 0
        cand, cand_utt, cand_view = cand[keep], cand_utt[keep], cand_view[keep]
    cos = (anchors @ cand.t()).clamp(-1.0 + COS_EPS, 1.0 - COS_EPS)
    same = a_utt[:, None] == cand_utt[None, :]
    pos = same & (a_view[:, None] != cand_view[None, :])
    return cos, same, pos, a_utt


class NTXentHead(nn.Module):
    """The label-free "head" of stage 8 (``head.name: ntxent``): an optional projection MLP, then
    :func:`nt_xent` over the ``views`` chunks of each utterance. It takes the embeddings of a batch of B
    utterances × V views, flattened utterance-major to (B·V, E); labels are not used.

    ``projector``: widths of the projection MLP as "2048-2048-512" (Linear, BatchNorm, ReLU between
    layers; SimCLR's form), "" for none (the NT-Xent-AM papers train without one). Defaults: the papers'
    setting (temperature 0.03, additive margin 0.1, symmetric, two views).
    """

    label_free = True
    final_margin: float | None = None       # no margin ramp: the margin is the loss's from the start

    def __init__(self, embed_dim: int, num_classes: int = 0, temperature: float = 0.03, margin: float = 0.1,
                 margin_type: str = "am", symmetric: bool = True, views: int = 2, projector: str = "",
                 fallback: str = "wespeaker") -> None:
        super().__init__()
        _check(temperature, margin, margin_type)
        if views < 2:
            raise ValueError(f"NTXentHead: views must be >= 2, got {views}")
        if fallback not in AAM_FALLBACKS:
            raise ValueError(f"NTXentHead: fallback {fallback!r}; valid: {', '.join(AAM_FALLBACKS)}")
        self.embed_dim = int(embed_dim)
        self.temperature, self.margin, self.margin_type = float(temperature), float(margin), margin_type
        self.symmetric, self.views, self.fallback = bool(symmetric), int(views), fallback
        widths = [int(w) for w in str(projector).replace(",", "-").split("-") if w.strip()]
        layers: list[nn.Module] = []
        d = self.embed_dim
        for k, w in enumerate(widths):
            layers.append(nn.Linear(d, w, bias=k == len(widths) - 1))
            if k < len(widths) - 1:
                layers += [nn.BatchNorm1d(w), nn.ReLU()]
            d = w
        self.projector = nn.Sequential(*layers)

    def _views(self, emb: Tensor) -> Tensor:
        if emb.dim() != 2 or emb.shape[1] != self.embed_dim or emb.shape[0] % self.views:
            raise ValueError(f"NTXentHead: expected (B * {self.views}, {self.embed_dim}) embeddings, got "
                             f"{tuple(emb.shape)}")
        return self.projector(emb).reshape(emb.shape[0] // self.views, self.views, -1)

    def loss_per_sample(self, emb: Tensor, labels: Tensor | None = None) -> Tensor:
        """(B,) loss of each utterance (the mean over its anchor / positive pairs)."""
        return nt_xent(self._views(emb), self.temperature, self.margin, self.margin_type, self.symmetric,
                       self.fallback, reduction="none")

    def mixed_loss_per_sample(self, emb: Tensor, y_a: Tensor, y_b: Tensor, lam: Tensor) -> Tensor:
        raise ValueError("NTXentHead: mixup is not defined for the contrastive objective (set mixup.kind: "
                         "none)")

    def update(self, margin: float) -> None:
        """No margin schedule (the margin is part of the loss)."""

    @torch.no_grad()
    def num_correct(self, emb: Tensor, labels: Tensor | None = None) -> float:
        """Utterances whose first view's nearest other candidate (by cosine, after the projector) is one
        of its own views: the contrastive task's top-1 accuracy, as a count."""
        cos, same, pos, a_utt = _pairs(self._views(emb.float()), symmetric=False)
        best = cos.argmax(dim=1)
        return float(pos[torch.arange(len(best)), best].sum())

    def extra_repr(self) -> str:
        return (f"temperature={self.temperature}, margin={self.margin}, margin_type={self.margin_type}, "
                f"symmetric={self.symmetric}, views={self.views}")
