"""Classification heads ("projections") for speaker-embedding training and their losses (docs/network.md §3).

Every head maps embeddings e (B, E) and labels y (B,) to per-sample losses through one interface (``Head``).
Cosine heads score c_k = cos(e, w_k) against K class centres (Xavier-uniform W (K, E)); the cosine is
clamped to [−1 + 1e-7, 1 − 1e-7] before any sqrt / acos so that gradients stay finite at c = ±1, and all head
math runs with autocast off in at least fp32 (float64 inputs stay float64).

Margin heads put the margin on the target column only, so their logits depend on the label; for mixup
(§4.3) ``mixed_loss_per_sample`` computes the cosines once and applies the margin twice, once per label.

``margin`` is the margin in use now; ``final_margin`` is the configured one, which a margin scheduler ramps
towards through ``update(margin)`` (None where nothing is scheduled). Heads are built at their final margin,
so a head used without a scheduler is already the configured one.
"""

from __future__ import annotations

import inspect
import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .contrastive import NTXentHead
from .margins import AAM_FALLBACKS, COS_EPS, angular_margin, work_dtype


def _set_target(scores: Tensor, labels: Tensor, target: Tensor) -> Tensor:
    """Copy of ``scores`` (B, K) with column labels[i] of row i replaced by target[i]."""
    return scores.scatter(1, labels.unsqueeze(1), target.unsqueeze(1))


class Head(nn.Module):
    """Common interface of the classification heads.

    Subclasses implement ``_prepare`` (label-free work, done once per call: cosines, AdaFace statistics),
    ``_logits`` and optionally ``_loss`` (per label set; default cross-entropy of ``_logits``) and
    ``_scores`` (margin-free scores for ``predict``).
    """

    final_margin: float | None = None

    def __init__(self, embed_dim: int, num_classes: int) -> None:
        super().__init__()
        if embed_dim < 1 or num_classes < 1:
            raise ValueError(f"{type(self).__name__}: embed_dim={embed_dim} and num_classes={num_classes} "
                             "must be >= 1")
        self.embed_dim, self.num_classes = int(embed_dim), int(num_classes)
        self.margin = 0.0

    # ---- interface -------------------------------------------------------------------------------------
    def cosine(self, emb: Tensor) -> Tensor:
        """Clamped cosine matrix (B, K) between the embeddings and the class centres."""
        raise NotImplementedError(f"{type(self).__name__} is not a cosine head")

    def logits(self, emb: Tensor, labels: Tensor) -> Tensor:
        """(B, K) logits with the margin on each row's target column ``labels``."""
        with torch.autocast(emb.device.type, enabled=False):
            return self._logits(self._prepare(self._check_emb(emb)), self._check_labels(labels, emb))

    def loss_per_sample(self, emb: Tensor, labels: Tensor) -> Tensor:
        """(B,) loss of each sample against its label."""
        with torch.autocast(emb.device.type, enabled=False):
            return self._loss(self._prepare(self._check_emb(emb)), self._check_labels(labels, emb))

    def mixed_loss_per_sample(self, emb: Tensor, y_a: Tensor, y_b: Tensor, lam: Tensor) -> Tensor:
        """(B,) λ L(y_a) + (1 − λ) L(y_b) with the label-free part (cosines, AdaFace EMA) computed once."""
        with torch.autocast(emb.device.type, enabled=False):
            prep = self._prepare(self._check_emb(emb))
            loss_a = self._loss(prep, self._check_labels(y_a, emb))
            loss_b = self._loss(prep, self._check_labels(y_b, emb))
        if lam.shape != loss_a.shape:
            raise ValueError(f"{type(self).__name__}: lam shape {tuple(lam.shape)} != batch "
                             f"{tuple(loss_a.shape)}")
        lam = lam.to(device=loss_a.device, dtype=loss_a.dtype)
        # = λ L_a + (1 − λ) L_b, exactly L_a when y_b = y_a or λ = 1
        return loss_a + (1.0 - lam) * (loss_b - loss_a)

    def update(self, margin: float) -> None:
        """Set the current margin (called by the margin scheduler); a no-op for heads without one."""

    @torch.no_grad()
    def num_correct(self, emb: Tensor, labels: Tensor) -> float:
        """How many samples the head classifies as their label (training accuracy, as a count)."""
        return float((self.predict(emb) == labels).sum())

    @torch.no_grad()
    def predict(self, emb: Tensor) -> Tensor:
        """(B,) argmax of the margin-free scores (for training accuracy)."""
        with torch.autocast(emb.device.type, enabled=False):
            return self._scores(self._check_emb(emb)).argmax(dim=1)

    # ---- to implement ----------------------------------------------------------------------------------
    def _prepare(self, emb: Tensor) -> Any:
        return self.cosine(emb)

    def _logits(self, prep: Any, labels: Tensor) -> Tensor:
        raise NotImplementedError

    def _loss(self, prep: Any, labels: Tensor) -> Tensor:
        return F.cross_entropy(self._logits(prep, labels), labels, reduction="none")

    def _scores(self, emb: Tensor) -> Tensor:
        return self.cosine(emb)

    # ---- checks ----------------------------------------------------------------------------------------
    def _check_emb(self, emb: Tensor) -> Tensor:
        if emb.dim() != 2 or emb.shape[1] != self.embed_dim:
            raise ValueError(f"{type(self).__name__}: expected embeddings (B, {self.embed_dim}), "
                             f"got {tuple(emb.shape)}")
        return emb.to(work_dtype(emb))

    def _check_labels(self, labels: Tensor, emb: Tensor) -> Tensor:
        if labels.dim() != 1 or labels.shape[0] != emb.shape[0]:
            raise ValueError(f"{type(self).__name__}: labels {tuple(labels.shape)} do not match batch "
                             f"{emb.shape[0]}")
        labels = labels.long()
        if bool(((labels < 0) | (labels >= self.num_classes)).any()):
            raise ValueError(f"{type(self).__name__}: labels outside [0, {self.num_classes}): "
                             f"min {int(labels.min())}, max {int(labels.max())}")
        return labels


class SoftmaxHead(Head):
    """Plain softmax: BN(E) → ReLU → Linear(E, K) with bias (WeSpeaker), cross-entropy, no margin."""

    def __init__(self, embed_dim: int, num_classes: int) -> None:
        super().__init__(embed_dim, num_classes)
        self.bn = nn.BatchNorm1d(embed_dim)
        self.linear = nn.Linear(embed_dim, num_classes)
        nn.init.xavier_uniform_(self.linear.weight)
        nn.init.zeros_(self.linear.bias)

    def _linear_scores(self, emb: Tensor, update_stats: bool) -> Tensor:
        """Logits in the head's parameter dtype; ``update_stats=False`` (predict) uses the batch statistics in
        training mode without touching the BN running averages."""
        emb = emb.to(self.linear.weight.dtype)
        if self.training and not update_stats:
            x = F.batch_norm(emb, None, None, self.bn.weight, self.bn.bias, True, 0.0, self.bn.eps)
        else:
            x = self.bn(emb)
        return self.linear(F.relu(x))

    def _prepare(self, emb: Tensor) -> Tensor:
        return self._linear_scores(emb, update_stats=True)

    def _scores(self, emb: Tensor) -> Tensor:
        return self._linear_scores(emb, update_stats=False)

    def _logits(self, prep: Tensor, labels: Tensor) -> Tensor:
        return prep


class _CosineHead(Head):
    """Heads scoring cosines against K normalised centres W (K, E)."""

    def __init__(self, embed_dim: int, num_classes: int) -> None:
        super().__init__(embed_dim, num_classes)
        self.weight = nn.Parameter(torch.empty(num_classes, embed_dim))
        nn.init.xavier_uniform_(self.weight)

    def cosine(self, emb: Tensor) -> Tensor:
        emb = emb.to(work_dtype(emb))
        w = F.normalize(self.weight.to(emb.dtype), dim=1)
        return (F.normalize(emb, dim=1) @ w.t()).clamp(-1.0 + COS_EPS, 1.0 - COS_EPS)


def _check_scale_margin(name: str, scale: float, margin: float, max_margin: float = math.inf) -> None:
    if not scale > 0:
        raise ValueError(f"{name}: scale must be > 0, got {scale}")
    if not 0 <= margin < max_margin:
        raise ValueError(f"{name}: margin must be in [0, {max_margin:g}), got {margin}")


class AddMarginHead(_CosineHead):
    """Additive cosine margin: target logit s·(c_y − m), others s·c_k, cross-entropy.

    AM-Softmax and CosFace are this same function; ``am`` (s = 30, m = 0.2) and ``cosface`` (s = 64, m = 0.35)
    differ only in their defaults (our choice, docs/network.md §3.3).
    """

    def __init__(self, embed_dim: int, num_classes: int, scale: float = 30.0, margin: float = 0.2) -> None:
        super().__init__(embed_dim, num_classes)
        _check_scale_margin(type(self).__name__, scale, margin)
        self.scale = float(scale)
        self.final_margin = float(margin)
        self.update(margin)

    def update(self, margin: float) -> None:
        self.margin = float(margin)

    def _logits(self, cos: Tensor, labels: Tensor) -> Tensor:
        target = cos.gather(1, labels.unsqueeze(1)).squeeze(1) - self.margin
        return self.scale * _set_target(cos, labels, target)


class AMSoftmaxHead(AddMarginHead):
    """AM-Softmax: AddMarginHead with s = 30, m = 0.2."""

    def __init__(self, embed_dim: int, num_classes: int, scale: float = 30.0, margin: float = 0.2) -> None:
        super().__init__(embed_dim, num_classes, scale, margin)


class CosFaceHead(AddMarginHead):
    """CosFace: AddMarginHead with s = 64, m = 0.35."""

    def __init__(self, embed_dim: int, num_classes: int, scale: float = 64.0, margin: float = 0.35) -> None:
        super().__init__(embed_dim, num_classes, scale, margin)


class AAMHead(_CosineHead):
    """Additive angular margin (ArcFace): target logit s·cos(θ_y + m) (:func:`angular_margin`, with its
    ``fallback`` beyond θ_y + m = π and ``easy_margin``), others s·c_k, cross-entropy."""

    FALLBACKS = AAM_FALLBACKS

    def __init__(self, embed_dim: int, num_classes: int, scale: float = 32.0, margin: float = 0.2,
                 fallback: str = "wespeaker", easy_margin: bool = False) -> None:
        super().__init__(embed_dim, num_classes)
        _check_scale_margin("AAMHead", scale, margin, math.pi)
        if fallback not in self.FALLBACKS:
            raise ValueError(f"AAMHead: fallback {fallback!r}; valid: {', '.join(self.FALLBACKS)}")
        self.scale, self.fallback, self.easy_margin = float(scale), fallback, bool(easy_margin)
        self.final_margin = float(margin)
        self.update(margin)

    def update(self, margin: float) -> None:
        if not 0 <= margin < math.pi:
            raise ValueError(f"AAMHead: margin must be in [0, π), got {margin}")
        self.margin = float(margin)

    def _logits(self, cos: Tensor, labels: Tensor) -> Tensor:
        c = cos.gather(1, labels.unsqueeze(1)).squeeze(1)
        phi = angular_margin(c, self.margin, self.fallback, self.easy_margin)
        return self.scale * _set_target(cos, labels, phi)


class OCSoftmaxHead(_CosineHead):
    """One-vs-rest OC-Softmax over K centres (a K-class form of the binary OC-Softmax, docs/network.md §3.5).

    L_i = softplus(α (m_pos − c_{i,y})) + ω Σ_{k≠y} softplus(α (c_{i,k} − m_neg)); ``negatives="mean"`` takes
    ω = 1/(K − 1) over all negatives, ``"topk"`` the mean over the ``topk`` largest negative terms (hardest
    negatives). ``logits`` are the one-vs-rest binary logits: α (c_y − m_pos) on the target column and
    α (c_k − m_neg) elsewhere, so the loss is softplus(−z_y) + ω Σ softplus(z_k). No scheduled margin.
    """

    NEGATIVES = ("mean", "topk")

    def __init__(self, embed_dim: int, num_classes: int, alpha: float = 20.0, m_pos: float = 0.9,
                 m_neg: float = 0.2, negatives: str = "mean", topk: int = 10) -> None:
        super().__init__(embed_dim, num_classes)
        if not alpha > 0:
            raise ValueError(f"OCSoftmaxHead: alpha must be > 0, got {alpha}")
        if not (-1 <= m_neg <= 1 and -1 <= m_pos <= 1):
            raise ValueError(f"OCSoftmaxHead: m_pos={m_pos}, m_neg={m_neg} must be cosines in [-1, 1]")
        if negatives not in self.NEGATIVES:
            raise ValueError(f"OCSoftmaxHead: negatives {negatives!r}; valid: {', '.join(self.NEGATIVES)}")
        if topk < 1:
            raise ValueError(f"OCSoftmaxHead: topk must be >= 1, got {topk}")
        self.alpha, self.m_pos, self.m_neg = float(alpha), float(m_pos), float(m_neg)
        self.negatives, self.topk = negatives, int(topk)

    def _logits(self, cos: Tensor, labels: Tensor) -> Tensor:
        target = cos.gather(1, labels.unsqueeze(1)).squeeze(1) - self.m_pos
        return self.alpha * _set_target(cos - self.m_neg, labels, target)

    def _loss(self, cos: Tensor, labels: Tensor) -> Tensor:
        z = self._logits(cos, labels)
        is_target = torch.zeros_like(z, dtype=torch.bool).scatter_(1, labels.unsqueeze(1), True)
        pos = F.softplus(-z.gather(1, labels.unsqueeze(1)).squeeze(1))
        k_neg = self.num_classes - 1
        if k_neg == 0:
            return pos
        neg = F.softplus(z)
        if self.negatives == "mean":
            return pos + neg.masked_fill(is_target, 0.0).sum(dim=1) / k_neg
        k = min(self.topk, k_neg)
        return pos + neg.masked_fill(is_target, -math.inf).topk(k, dim=1).values.mean(dim=1)


class AdaFaceHead(_CosineHead):
    """AdaFace: margin adapted to the embedding norm, a proxy for sample quality (Kim et al. 2022).

    n_i = clip(‖e_i‖, 0.001, 100) (detached); in training mode each call first updates the EMA buffers
    μ ← α_t mean(n) + (1 − α_t) μ and σ ← α_t std(n) + (1 − α_t) σ (unbiased std; σ is kept for a batch of
    one). Then ẑ_i = clip(h (n_i − μ)/(σ + 1e-3), −1, 1) and, on the target column only, with
    θ_y = acos(clamp(c_y, ±(1 − 1e-3))): c'_y = cos(clip(θ_y − m ẑ_i, 1e-3, π − 1e-3)) − (m + m ẑ_i);
    logits s·c'_y (target), s·c_k (others), cross-entropy. Eval mode leaves the buffers alone.
    """

    NORM_EPS = 1e-3

    def __init__(self, embed_dim: int, num_classes: int, scale: float = 32.0, margin: float = 0.2,
                 h: float = 0.333, t_alpha: float = 0.01) -> None:
        super().__init__(embed_dim, num_classes)
        _check_scale_margin("AdaFaceHead", scale, margin)
        if not 0 <= t_alpha <= 1:
            raise ValueError(f"AdaFaceHead: t_alpha must be in [0, 1], got {t_alpha}")
        self.scale, self.h, self.t_alpha = float(scale), float(h), float(t_alpha)
        self.final_margin = float(margin)
        self.margin = float(margin)
        self.register_buffer("batch_mean", torch.tensor(20.0))
        self.register_buffer("batch_std", torch.tensor(100.0))

    def update(self, margin: float) -> None:
        self.margin = float(margin)

    def _prepare(self, emb: Tensor) -> tuple[Tensor, Tensor]:
        cos = self.cosine(emb)
        norms = emb.detach().norm(dim=1).clamp(0.001, 100.0)
        if self.training:
            with torch.no_grad():
                a = self.t_alpha
                self.batch_mean.mul_(1.0 - a).add_(a * norms.mean().to(self.batch_mean.dtype))
                if norms.numel() > 1:
                    self.batch_std.mul_(1.0 - a).add_(a * norms.std().to(self.batch_std.dtype))
        mean, std = self.batch_mean.to(norms.dtype), self.batch_std.to(norms.dtype)
        z = (self.h * (norms - mean) / (std + self.NORM_EPS)).clamp(-1.0, 1.0)
        return cos, z

    def _logits(self, prep: tuple[Tensor, Tensor], labels: Tensor) -> Tensor:
        cos, z = prep
        c = cos.gather(1, labels.unsqueeze(1)).squeeze(1)
        theta = torch.acos(c.clamp(-1.0 + self.NORM_EPS, 1.0 - self.NORM_EPS))
        theta = (theta - self.margin * z).clamp(self.NORM_EPS, math.pi - self.NORM_EPS)
        target = torch.cos(theta) - (self.margin + self.margin * z)
        return self.scale * _set_target(cos, labels, target)


HEADS: dict[str, type[Head]] = {
    "softmax": SoftmaxHead,
    "am": AMSoftmaxHead,
    "cosface": CosFaceHead,
    "aam": AAMHead,
    "ocsoftmax": OCSoftmaxHead,
    "adaface": AdaFaceHead,
}


# Label-free objectives built like a head (stage 8 without labels): not margin heads, not in the study's
# margin tables.
LABEL_FREE_HEADS: dict[str, type[nn.Module]] = {"ntxent": NTXentHead}


def _head_class(name: str) -> type[nn.Module]:
    cls = HEADS.get(name) or LABEL_FREE_HEADS.get(name)
    if cls is None:
        raise ValueError(f"unknown head {name!r}; valid: {', '.join([*HEADS, *LABEL_FREE_HEADS])}")
    return cls


def is_label_free(name: str) -> bool:
    """Whether head ``name`` trains without labels (contrastive: every utterance is its own instance)."""
    return bool(getattr(_head_class(name), "label_free", False))


def head_params(name: str) -> list[str]:
    """The keyword parameters (beyond embed_dim, num_classes) that head ``name`` accepts."""
    sig = inspect.signature(_head_class(name).__init__)
    return [p for p in sig.parameters if p not in ("self", "embed_dim", "num_classes")]


def head_defaults(name: str) -> dict[str, Any]:
    """The default of every keyword parameter of head ``name``."""
    sig = inspect.signature(_head_class(name).__init__)
    return {k: p.default for k, p in sig.parameters.items() if k in head_params(name)}


def build_head(name: str, embed_dim: int, num_classes: int, **params: Any) -> nn.Module:
    """Head ``name`` (a key of HEADS or LABEL_FREE_HEADS) with its keyword parameters; unknown names /
    parameters raise ValueError listing the valid ones."""
    cls = _head_class(name)
    valid = head_params(name)
    unknown = sorted(set(params) - set(valid))
    if unknown:
        raise ValueError(f"head {name!r}: unknown parameter(s) {', '.join(unknown)}; "
                         f"valid: {', '.join(valid) or '(none)'}")
    return cls(embed_dim, num_classes, **params)
