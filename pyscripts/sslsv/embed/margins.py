"""Margin arithmetic shared by the classification heads (:mod:`.heads`) and the contrastive loss
(:mod:`.contrastive`): the cosine clamp, the working precision, and the additive angular margin."""

from __future__ import annotations

import math

import torch
from torch import Tensor

COS_EPS = 1e-7      # cosines are clamped to [−1 + COS_EPS, 1 − COS_EPS] before any sqrt / acos


def work_dtype(x: Tensor) -> torch.dtype:
    """At least fp32: half / bfloat16 embeddings are promoted, float64 ones kept."""
    return torch.promote_types(x.dtype, torch.float32)


AAM_FALLBACKS = ("wespeaker", "insightface")


def angular_margin(c: Tensor, margin: float, fallback: str = "wespeaker",
                   easy_margin: bool = False) -> Tensor:
    """cos(θ + m) of cosines c = cos θ: the additive angular margin of ArcFace (AAM-Softmax), and of the
    positive pair in NT-Xent-AAM (:mod:`sslsv.embed.contrastive`).

    Where θ + m > π (c ≤ th = cos(π − m)) cos(θ + m) is no longer decreasing in θ; there the result is
    c − (1 + cos(π − m)) (``fallback="wespeaker"``, continuous at th, both sides −1) or c − m·sin m
    (``"insightface"``, SpeechBrain / voxceleb_trainer, a small jump). ``easy_margin`` applies the margin
    only where c > 0.
    """
    if fallback not in AAM_FALLBACKS:
        raise ValueError(f"AAM fallback {fallback!r}; valid: {', '.join(AAM_FALLBACKS)}")
    sin = torch.sqrt((1.0 - c * c).clamp(min=0.0))
    phi = c * math.cos(margin) - sin * math.sin(margin)
    if easy_margin:
        return torch.where(c > 0, phi, c)
    th = math.cos(math.pi - margin)
    offset = 1.0 + th if fallback == "wespeaker" else margin * math.sin(math.pi - margin)
    return torch.where(c > th, phi, c - offset)
