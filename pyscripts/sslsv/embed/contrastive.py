"""NT-Xent with a margin on the positive pair (NT-Xent-AM) for label-free, SimCLR-style training of the
speaker network (Lepage & Dehak, "Experimenting with Additive Margins for Contrastive Self-Supervised
Speaker Verification", Interspeech 2023; "Additive Margin in Contrastive Self-Supervised Frameworks to
Learn Discriminative Speaker Representations", Odyssey 2024; docs/network.md).

A batch holds V ≥ 2 views (random chunks, augmented independently) of each of B utterances. Every
embedding is L2-normalised and compared by cosine. For an anchor a of utterance i and one positive p (another
view of i), with s = 1 / temperature::

    ℓ(a, p) = −log  exp(s·f(cos(a, p))) / ( exp(s·f(cos(a, p))) + Σ_{n ∈ N(a)} exp(s·cos(a, n)) )

where f is the margin, applied to the positive only: ``am`` f(c) = c − m (additive margin, CosFace-like),
``aam`` f(c) = cos(θ + m) (additive angular margin, ArcFace-like, :func:`~sslsv.embed.heads.angular_margin`),
m = 0 the plain NT-Xent. The loss is the mean of ℓ over every (anchor, positive) pair.

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
from torch import Tensor

from .heads import AAM_FALLBACKS, COS_EPS, _work_dtype, angular_margin

MARGIN_TYPES = ("am", "aam")


def _check(temperature: float, margin: float, margin_type: str) -> None:
    if not temperature > 0:
        raise ValueError(f"NT-Xent: temperature must be > 0, got {temperature}")
    if margin_type not in MARGIN_TYPES:
        raise ValueError(f"NT-Xent: margin_type {margin_type!r}; valid: {', '.join(MARGIN_TYPES)}")
    if not 0 <= margin < (math.pi if margin_type == "aam" else 2.0):
        raise ValueError(f"NT-Xent: margin {margin} out of range for {margin_type}")


def nt_xent(z: Tensor, temperature: float = 0.03, margin: float = 0.0, margin_type: str = "am",
            symmetric: bool = True, fallback: str = "wespeaker") -> Tensor:
    """NT-Xent(-AM / -AAM) of views z (B, V, D) of B utterances: a scalar, the mean over every
    (anchor, positive) pair (module docstring). Computed in at least fp32, autocast off."""
    _check(temperature, margin, margin_type)
    if z.dim() != 3 or z.shape[0] < 2 or z.shape[1] < 2:
        raise ValueError(f"NT-Xent: expected views (B >= 2, V >= 2, D), got {tuple(z.shape)}")
    if fallback not in AAM_FALLBACKS:
        raise ValueError(f"NT-Xent: fallback {fallback!r}; valid: {', '.join(AAM_FALLBACKS)}")
    b, v, _ = z.shape
    with torch.autocast(z.device.type, enabled=False):
        e = F.normalize(z.to(_work_dtype(z)), dim=2)
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
        scale = 1.0 / temperature
        neg_lse = torch.logsumexp((scale * cos).masked_fill(same, -math.inf), dim=1)   # (A,)
        c_pos = cos[pos]                                                               # (P,) row-major
        f_pos = c_pos - margin if margin_type == "am" else angular_margin(c_pos, margin, fallback)
        logit = scale * f_pos
        rows = pos.nonzero()[:, 0]
        return (torch.logaddexp(logit, neg_lse[rows]) - logit).mean()


class NTXent(torch.nn.Module):
    """:func:`nt_xent` with its settings as attributes (the config keys of the contrastive objective)."""

    def __init__(self, temperature: float = 0.03, margin: float = 0.1, margin_type: str = "am",
                 symmetric: bool = True, fallback: str = "wespeaker") -> None:
        super().__init__()
        _check(temperature, margin, margin_type)
        self.temperature, self.margin, self.margin_type = float(temperature), float(margin), margin_type
        self.symmetric, self.fallback = bool(symmetric), fallback

    def forward(self, z: Tensor) -> Tensor:
        return nt_xent(z, self.temperature, self.margin, self.margin_type, self.symmetric, self.fallback)

    def extra_repr(self) -> str:
        return (f"temperature={self.temperature}, margin={self.margin}, margin_type={self.margin_type}, "
                f"symmetric={self.symmetric}")
