"""Loss terms of the information-maximisation clustering family (IMSAT, CIMC, CAMSAT; docs/algorithms.md
§2, §3) as pure PyTorch functions: they work on any device and in float32 or float64, and never touch model
state.

Conventions:

* ``model`` is a callable ``x -> logits``; whatever batch-norm mode it is in is the caller's business
  (IMSAT normalises the perturbed passes with batch statistics without updating the running averages).
* Probabilities are rows of a (B, C) tensor; ``logits_views`` is a list of (B, C) logits, one per
  augmented view, or a (V, B, C) tensor.
* Targets are detached wherever the reference treats them as fixed (VAT's clean prediction, VMT's clean
  logits, CAMSAT's ``L_aug`` target).
* ``eps`` smoothing ``log(p + eps)`` is IMSAT's (1e-8) and is used where the reference uses it (entropies,
  R_VAT, ``L_aug``); the other terms are computed exactly from log-softmax.
* Random draws (VAT's start direction, VMT's permutation and λ) come from ``generator`` and are made on
  the generator's own device, then moved to the data's device, so a CPU generator gives the same draws
  whether the data are on the CPU or a GPU. Without a generator the global RNG of the data's device is
  used.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from scipy.special import betaincinv

from .._base import gen_device, rand, randn

Model = Callable[[torch.Tensor], torch.Tensor]
Views = torch.Tensor | Sequence[torch.Tensor]

# --------------------------------------------------------------------------- helpers


def _l2_rows(v: torch.Tensor) -> torch.Tensor:
    """Each row (all but the first axis flattened) scaled to unit L2 norm; zero rows stay zero."""
    n = v.flatten(1).norm(dim=1).clamp_min(torch.finfo(v.dtype).tiny)
    return v / n.view(-1, *([1] * (v.dim() - 1)))


def _per_sample(a: float | torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """A scalar or a (B,) tensor shaped to broadcast against ``x`` (B, ...)."""
    t = torch.as_tensor(a, dtype=x.dtype, device=x.device)
    return t if t.dim() == 0 else t.view(-1, *([1] * (x.dim() - 1)))


def _stack_views(logits_views: Views) -> torch.Tensor:
    z = logits_views if isinstance(logits_views, torch.Tensor) else torch.stack(list(logits_views))
    if z.dim() != 3:
        raise ValueError(f"logits_views must be (V, B, C) or a list of (B, C), got shape {tuple(z.shape)}")
    return z


def _kl_logsoftmax(target_logits: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
    """Row-wise exact KL(softmax(target_logits) ‖ softmax(logits)), summed over the last axis."""
    lp = F.log_softmax(target_logits, dim=-1)
    return (lp.exp() * (lp - F.log_softmax(logits, dim=-1))).sum(-1)


# --------------------------------------------------------------------------- entropies and KL


def entropy(p: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """Entropy of each row, ``−Σ_c p log(p + eps)`` (IMSAT's smoothing)."""
    return -(p * torch.log(p + eps)).sum(-1)


def mi_terms(p: torch.Tensor, eps: float = 1e-8) -> tuple[torch.Tensor, torch.Tensor]:
    """IMSAT's two entropy estimates on a batch of cluster posteriors ``p`` (B, C):
    ``(H(Y|X), H(Y))`` = (mean row entropy, entropy of the mean row). The loss uses
    ``λ (H(Y|X) − μ H(Y))``."""
    return entropy(p, eps).mean(), entropy(p.mean(0), eps)


def kl_probs_logits(p_target: torch.Tensor, logits: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """Batch mean of ``Σ_c p log((p + eps)/(q + eps))`` with ``q = softmax(logits)``: IMSAT's smoothed
    KL(p ‖ q). ``p_target`` is used as given (detach it to make it a fixed target)."""
    q = torch.softmax(logits, dim=-1)
    return (p_target * (torch.log(p_target + eps) - torch.log(q + eps))).sum(-1).mean()


# --------------------------------------------------------------------------- VAT (IMSAT's R_VAT)


def vat_direction(model: Model, x: torch.Tensor, p_clean: torch.Tensor, xi: float | torch.Tensor,
                  n_power: int = 1, generator: torch.Generator | None = None,
                  d: torch.Tensor | None = None) -> torch.Tensor:
    """Unit-norm (per row) adversarial direction of VAT by ``n_power`` power iterations.

    Starts from ``d`` (default: N(0, I) drawn from ``generator``, rows normalised) and repeats
    ``d ← normalize(∇_d KL(p_clean ‖ softmax(model(x + xi·d))))``. ``n_power=0`` returns the random
    start. The gradient is taken with :func:`torch.autograd.grad` with respect to ``d`` only, so nothing
    accumulates in the parameters' ``.grad``. A row whose gradient is exactly zero keeps its previous
    direction. Returns a detached (B, ...) tensor.
    """
    if n_power < 0:
        raise ValueError(f"n_power must be >= 0, got {n_power}")
    if d is None:
        d = _l2_rows(randn(tuple(x.shape), x, generator))
    d = d.detach().to(dtype=x.dtype, device=x.device)
    p = p_clean.detach()
    x0 = x.detach()
    xi_t = _per_sample(xi, x0)
    for _ in range(n_power):
        dv = d.clone().requires_grad_(True)
        with torch.enable_grad():
            kl = kl_probs_logits(p, model(x0 + xi_t * dv))
            (g,) = torch.autograd.grad(kl, dv)
        g_norm = g.flatten(1).norm(dim=1).view(-1, *([1] * (x0.dim() - 1)))
        d = torch.where(g_norm > 0, g / g_norm.clamp_min(torch.finfo(g.dtype).tiny), d)
    return d.detach()


def vat_loss(model: Model, x: torch.Tensor, p_clean: torch.Tensor, eps: float | torch.Tensor,
             xi: float | torch.Tensor, n_power: int = 1, generator: torch.Generator | None = None, *,
             d: torch.Tensor | None = None) -> torch.Tensor:
    """IMSAT's R_VAT: ``KL(p_clean ‖ softmax(model(x + r)))`` (smoothed, batch mean) with the adversarial
    perturbation ``r_i = eps_i · d_i``, ``d`` from :func:`vat_direction` (``xi`` is the finite-difference
    step of the power iteration, ``eps`` a per-sample (B,) radius, e.g. 0.25 × the kNN distance, or a
    scalar). ``p_clean`` is detached. ``d`` overrides the random start (for tests)."""
    direction = vat_direction(model, x, p_clean, xi, n_power=n_power, generator=generator, d=d)
    r = _per_sample(eps, x) * direction
    return kl_probs_logits(p_clean.detach(), model(x + r))


# --------------------------------------------------------------------------- VMT mixup (CIMC)


def sample_beta(n: int, alpha: float, like: torch.Tensor, generator: torch.Generator | None = None
                ) -> torch.Tensor:
    """``n`` draws of Beta(alpha, alpha) in ``like``'s dtype and device, reproducible from ``generator``.

    Inverse-CDF sampling: u ~ U(0, 1) from the torch generator (float64), λ = I⁻¹_u(α, α) by
    :func:`scipy.special.betaincinv` (α = 1 is uniform: λ = u). ``torch.distributions.Beta`` cannot take
    a generator (its Gamma sampler uses the global RNG), hence this route; n is a batch size, so the CPU
    round trip is negligible.
    """
    if alpha <= 0:
        raise ValueError(f"mixup alpha must be > 0, got {alpha}")
    u = rand((n,), like, generator, dtype=torch.float64)
    if alpha == 1.0:
        lam = u
    else:
        lam = torch.from_numpy(np.asarray(betaincinv(alpha, alpha, u.cpu().numpy()), dtype=np.float64))
    return lam.to(device=like.device, dtype=like.dtype)


def mixup_loss(model: Model, x: torch.Tensor, logits_clean: torch.Tensor, alpha: float = 1.0,
               generator: torch.Generator | None = None, *, lam: torch.Tensor | None = None,
               perm: torch.Tensor | None = None) -> torch.Tensor:
    """Virtual Mixup Training on logits (CIMC eq. 5 as the paper's text describes it, VMT's
    ``logit_mix_loss``; docs/algorithms.md §3.2a).

    With a random permutation π (drawn first) and λ_i ~ Beta(α, α) per sample (drawn second; no
    ``max(λ, 1−λ)``): x̃ = λx + (1−λ)x_π, z̃ = λz + (1−λ)z_π of the *detached* clean logits z, and
    the loss is the batch mean of the exact KL(softmax(z̃) ‖ softmax(model(x̃))). ``lam`` (B,) and
    ``perm`` (B,) override the draws (for tests).
    """
    b = x.shape[0]
    if perm is None:
        perm = torch.randperm(b, generator=generator, device=gen_device(generator, x))
    perm = perm.to(x.device)
    if lam is None:
        lam = sample_beta(b, alpha, x, generator)
    lam = lam.to(dtype=x.dtype, device=x.device)
    z = logits_clean.detach()
    lx = _per_sample(lam, x)
    lz = _per_sample(lam, z)
    x_mix = lx * x + (1 - lx) * x[perm]
    z_mix = lz * z + (1 - lz) * z[perm]
    return _kl_logsoftmax(z_mix, model(x_mix)).mean()


# --------------------------------------------------------------------------- contrastive terms


def supcon_loss(features: torch.Tensor, labels: torch.Tensor, temperature: float = 0.07,
                base_temperature: float = 0.07) -> torch.Tensor:
    """Supervised contrastive loss (Khosla et al.; docs/algorithms.md §3.2b) with pseudo-labels.

    ``features`` (B, D) or (B, V, D) (V views, contrast mode "all") are L2-normalised here (CIMC passes
    the logits). For anchor i among the B·V rows, A(i) is every other row and P(i) the rows of A(i) with
    the same label: ``ℓ_i = −(τ/τ_b) mean_{j∈P(i)} log softmax_{a∈A(i)}(h_i·h_a/τ)_j``. Anchors with no
    positive (singleton pseudo-labels) are left out of the mean instead of giving NaN (the reference code
    divides by |P(i)| = 0); when no anchor has a positive the result is 0 with the graph kept. The
    softmax denominators are log-sum-exps (row maximum subtracted). Memory O((B·V)²).
    """
    if features.dim() == 2:
        features = features.unsqueeze(1)
    if features.dim() != 3:
        raise ValueError(f"features must be (B, D) or (B, V, D), got shape {tuple(features.shape)}")
    b, v, _ = features.shape
    labels = labels.detach().reshape(-1).to(features.device)
    if labels.numel() != b:
        raise ValueError(f"{labels.numel()} labels for {b} samples")
    n = b * v
    if n < 2:
        return features.sum() * 0
    h = F.normalize(features, dim=-1).transpose(0, 1).reshape(n, -1)   # view-major, as SupContrast
    lab = labels.repeat(v)
    sim = h @ h.T / temperature
    self_mask = torch.eye(n, dtype=torch.bool, device=h.device)
    log_prob = sim - torch.logsumexp(sim.masked_fill(self_mask, float("-inf")), dim=1, keepdim=True)
    pos = (lab[:, None] == lab[None, :]) & ~self_mask
    n_pos = pos.sum(1)
    valid = n_pos > 0
    if not bool(valid.any()):
        return features.sum() * 0
    mean_log_prob_pos = torch.where(pos, log_prob, torch.zeros_like(log_prob)).sum(1) / n_pos.clamp_min(1)
    return -(temperature / base_temperature) * mean_log_prob_pos[valid].mean()


def info_nce(z1: torch.Tensor, z2: torch.Tensor, temperature: float = 0.1) -> torch.Tensor:
    """Symmetric NT-Xent (SimCLR) between two views whose rows are matched: the 2B rows are
    L2-normalised, each row's positive is its counterpart in the other view and its negatives are the
    other 2B − 2 rows of both views; cross-entropy averaged over all 2B anchors."""
    b = z1.shape[0]
    if z2.shape[0] != b:
        raise ValueError(f"views have {b} and {z2.shape[0]} rows")
    h = F.normalize(torch.cat([z1, z2]), dim=-1)
    sim = (h @ h.T / temperature).masked_fill(torch.eye(2 * b, dtype=torch.bool, device=h.device),
                                              float("-inf"))
    target = torch.cat([torch.arange(b, 2 * b), torch.arange(b)]).to(h.device)
    return F.cross_entropy(sim, target)


# --------------------------------------------------------------------------- CAMSAT consistency terms


def aug_loss(p_clean: torch.Tensor, logits_views: Views, eps: float = 1e-8) -> torch.Tensor:
    """CAMSAT ``L_aug = mean_i mean_k KL(p_i ‖ softmax(z_i^k))`` (IMSAT smoothing), with the clean
    posterior ``p_clean`` (B, C) detached as a fixed target, as in VAT (docs/algorithms.md §2.2)."""
    z = _stack_views(logits_views)
    p = p_clean.detach().unsqueeze(0)
    q = torch.softmax(z, dim=-1)
    return (p * (torch.log(p + eps) - torch.log(q + eps))).sum(-1).mean()


def symmetry_loss(logits_views: Views, include_clean: torch.Tensor | None = None) -> torch.Tensor:
    """CAMSAT ``L_symmetry``: generalised Jensen–Shannon divergence of the views' posteriors,
    ``mean_i mean_k KL(p_i^k ‖ M_i)`` with the mixture ``M_i = mean_k p_i^k`` (docs/algorithms.md §2.2).

    ``include_clean`` (B, C): clean posteriors taken in as one more distribution, in the mixture *and*
    in the mean of KLs (AugMix's JS consistency, which mixes clean + augmented predictions); not
    detached, so it is pulled towards the views too. Exact: log-softmax for the views, log-sum-exp for
    the mixture. For two views without the clean one this is JS(p, q) = ½KL(p‖m) + ½KL(q‖m).
    """
    logp = F.log_softmax(_stack_views(logits_views), dim=-1)
    if include_clean is not None:
        p_c = include_clean.to(logp.dtype).unsqueeze(0)
        logp = torch.cat([logp, torch.log(p_c.clamp_min(torch.finfo(p_c.dtype).tiny))])
    log_m = torch.logsumexp(logp, dim=0) - float(np.log(logp.shape[0]))
    return (logp.exp() * (logp - log_m.unsqueeze(0))).sum(-1).mean()


# --------------------------------------------------------------------------- VICReg terms


def vicreg_variance(z: torch.Tensor, gamma: float = 1.0, eps: float = 1e-4) -> torch.Tensor:
    """VICReg variance term: ``mean_j relu(gamma − sqrt(var_j + eps))`` over the columns of ``z`` (B, D),
    with the unbiased batch variance (VICReg's code: ``x.var(dim=0)``)."""
    return F.relu(gamma - torch.sqrt(z.var(dim=0) + eps)).mean()


def vicreg_covariance(z: torch.Tensor) -> torch.Tensor:
    """VICReg covariance term: the sum of squared off-diagonal entries of the (unbiased) batch covariance
    of ``z`` (B, D), divided by D."""
    b, dim = z.shape
    zc = z - z.mean(0)
    cov = zc.T @ zc / (b - 1)
    off = cov - torch.diag(torch.diagonal(cov))
    return off.pow(2).sum() / dim


# --------------------------------------------------------------------------- the objective: one row per term


@dataclass(eq=False)
class Batch:
    """What the loss terms see of one mini-batch: ``est``, the estimator (the terms read their
    hyperparameters from it), the ``model``, the inputs ``x`` (B, d), their neighbour distances ``delta``
    (B,), VAT's finite-difference step ``xi``, the augmented inputs ``views`` (a list of (B, d), or None),
    the ``generator`` of the random draws and the clean pass's ``logits`` (B, C); ``p`` (their softmax, in
    the graph) and ``p_hat`` (detached) are computed at once."""

    est: Any
    model: Model
    x: torch.Tensor
    delta: torch.Tensor
    xi: float
    views: list[torch.Tensor] | None
    generator: torch.Generator | None
    logits: torch.Tensor
    p: torch.Tensor = field(init=False)
    p_hat: torch.Tensor = field(init=False)

    def __post_init__(self) -> None:
        self.p = torch.softmax(self.logits, dim=1)
        self.p_hat = self.p.detach()

    @cached_property
    def mi(self) -> tuple[torch.Tensor, torch.Tensor]:
        """``(H(Y|X), H(Y))`` of :func:`mi_terms`, computed once for the two terms that use them."""
        return mi_terms(self.p)

    @cached_property
    def view_logits(self) -> list[torch.Tensor]:
        """The logits of every view (empty without views): one forward pass each, made once."""
        return [self.model(v) for v in self.views] if self.views else []


@dataclass(frozen=True)
class Term:
    """A row of the objective. ``name``: the term's curve column. ``weight``: the estimator parameter that
    holds its weight (the term is computed when it is > 0). ``loss``: the term's value on a
    :class:`Batch`. ``views``: the term needs augmented views (skipped on a batch without any; a weight > 0
    makes the estimator produce them). ``perturbs``: the term makes forward passes of its own inputs (the
    views' passes follow them). ``coef``: the factor of the term in the total, from the estimator
    (default: the weight)."""

    name: str
    weight: str
    loss: Callable[[Batch], torch.Tensor]
    views: bool = False
    perturbs: bool = False
    coef: Callable[[Any], float] | None = None


def _vat(b: Batch) -> torch.Tensor:
    return vat_loss(b.model, b.x, b.p_hat, b.est.vat_eps * b.delta, b.xi, n_power=b.est.vat_power,
                    generator=b.generator)


def _mixup(b: Batch) -> torch.Tensor:
    return mixup_loss(b.model, b.x, b.logits.detach(), alpha=b.est.mixup_alpha, generator=b.generator)


def _supcon(b: Batch) -> torch.Tensor:
    """SupCon on the clean logits with the argmax pseudo-labels of the samples predicted with at least
    ``supcon_min_confidence``."""
    conf, pseudo = b.p_hat.max(dim=1)
    keep = conf >= b.est.supcon_min_confidence
    return supcon_loss(b.logits[keep], pseudo[keep], temperature=b.est.supcon_temperature,
                       base_temperature=b.est.supcon_temperature)


def _symmetry(b: Batch) -> torch.Tensor:
    return symmetry_loss(b.view_logits, include_clean=b.p if b.est.symmetry_include_clean else None)


def _info_nce(b: Batch) -> torch.Tensor:
    return info_nce(b.logits, b.view_logits[0], temperature=b.est.info_nce_temperature)


def _vicreg_inv(b: Batch) -> torch.Tensor:
    return torch.stack([F.mse_loss(b.logits, v) for v in b.view_logits]).mean()


def _vicreg_var(b: Batch) -> torch.Tensor:
    return torch.stack([vicreg_variance(z, gamma=b.est.vicreg_gamma) for z in [b.logits, *b.view_logits]]
                       ).mean()


def _vicreg_cov(b: Batch) -> torch.Tensor:
    return torch.stack([vicreg_covariance(z) for z in [b.logits, *b.view_logits]]).mean()


# The rows' order is the order in which the terms are computed and summed (and so that of the random draws:
# VAT's, then mixup's) and of the curve's columns; changing it changes the numbers.
TERMS: tuple[Term, ...] = (
    Term("cond_ent", "im_weight", lambda b: b.mi[0], coef=lambda e: e.im_weight * e.lam),
    Term("marg_ent", "im_weight", lambda b: b.mi[1], coef=lambda e: -e.im_weight * e.lam * e.mu),
    Term("vat", "vat_weight", _vat, perturbs=True),
    Term("mixup", "mixup_weight", _mixup, perturbs=True),
    Term("supcon", "supcon_weight", _supcon),
    Term("aug", "aug_weight", lambda b: aug_loss(b.p_hat, b.view_logits), views=True),
    Term("symmetry", "symmetry_weight", _symmetry, views=True),
    Term("info_nce", "info_nce_weight", _info_nce, views=True),
    Term("vicreg_inv", "vicreg_inv_weight", _vicreg_inv, views=True),
    Term("vicreg_var", "vicreg_var_weight", _vicreg_var),
    Term("vicreg_cov", "vicreg_cov_weight", _vicreg_cov),
)


def total_loss(b: Batch, terms: Sequence[Term] | None = None) -> tuple[torch.Tensor, dict[str, float]]:
    """``Σ coef · loss`` over the rows of ``terms`` (default :data:`TERMS`) whose weight is > 0, in the
    rows' order, and the value of each term computed. The model's forward passes keep one order, which
    fixes the float sums of the parameter gradients: the clean pass (the caller's), the perturbing terms'
    passes, then the views' passes (made right after the last ``perturbs`` row, used or not). The caller
    decides the batch-norm mode (the estimator freezes the running averages)."""
    terms = TERMS if terms is None else terms
    views_at = max((i + 1 for i, t in enumerate(terms) if t.perturbs), default=0)
    total = b.logits.new_zeros(())
    values: dict[str, float] = {}
    for i, term in enumerate(terms):
        if i == views_at:
            _ = b.view_logits
        if not getattr(b.est, term.weight) > 0 or (term.views and not b.view_logits):
            continue
        value = term.loss(b)
        total = total + (getattr(b.est, term.weight) if term.coef is None else term.coef(b.est)) * value
        values[term.name] = float(value.detach())
    return total, values
