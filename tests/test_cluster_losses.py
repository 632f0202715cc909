"""Deep clustering losses, kNN distances and i-vector-space views (sslsv.cluster.deep.losses / knn /
views): every loss against a slow float64 numpy reference written from the formulas (literal loops over
samples, classes and anchors), VAT's power iteration against central finite differences, the kNN
distances against scikit-learn's exact tree search and a literal copy of IMSAT's calculate_distance.py,
the cache round trip, and the views' determinism and noise scale."""

from __future__ import annotations

import json
import math
import sys
import types

import numpy as np
import pytest
import torch
from scipy import stats
from sklearn.neighbors import NearestNeighbors
from sslsv.cluster.deep import knn, losses
from sslsv.cluster.deep.views import IvectorAugment

F64 = torch.float64


# --------------------------------------------------------------------------- numpy references


def np_softmax(z: np.ndarray) -> np.ndarray:
    e = np.exp(z - z.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def ref_entropy_row(p, eps=1e-8) -> float:
    return -sum(pc * math.log(pc + eps) for pc in p)


def ref_kl_smoothed(p, q, eps=1e-8) -> float:
    return sum(pc * (math.log(pc + eps) - math.log(qc + eps)) for pc, qc in zip(p, q, strict=True))


def ref_kl(p, q) -> float:
    return sum(pc * math.log(pc / qc) for pc, qc in zip(p, q, strict=True) if pc > 0)


class Linear:
    """A tiny linear model known to both torch (for the code under test) and numpy (for references)."""

    def __init__(self, rng, d, c, scale=1.0):
        self.W = rng.standard_normal((c, d)) * scale
        self.b = rng.standard_normal(c) * 0.1
        self.tW = torch.tensor(self.W, requires_grad=True)
        self.tb = torch.tensor(self.b, requires_grad=True)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return x @ self.tW.T + self.tb

    def np(self, x: np.ndarray) -> np.ndarray:
        return x @ self.W.T + self.b


def mlp(d=6, c=5, seed=0) -> torch.nn.Module:
    torch.manual_seed(seed)
    return torch.nn.Sequential(torch.nn.Linear(d, 16), torch.nn.Tanh(), torch.nn.Linear(16, c)).double()


def t(a) -> torch.Tensor:
    return torch.tensor(np.asarray(a), dtype=F64)


# --------------------------------------------------------------------------- entropies and KL


def test_entropy_mi_terms_and_kl_match_loops():
    rng = np.random.default_rng(0)
    p = np_softmax(rng.standard_normal((7, 5)) * 2)
    p[0] = [1, 0, 0, 0, 0]                      # a one-hot row: 0·log(0 + eps) = 0
    z = rng.standard_normal((7, 5)) * 3
    ent = losses.entropy(t(p)).numpy()
    np.testing.assert_allclose(ent, [ref_entropy_row(r) for r in p], rtol=1e-12, atol=1e-12)
    h_cond, h_marg = losses.mi_terms(t(p))
    assert h_cond.item() == pytest.approx(np.mean([ref_entropy_row(r) for r in p]), rel=1e-12)
    assert h_marg.item() == pytest.approx(ref_entropy_row(p.mean(0)), rel=1e-12)
    q = np_softmax(z)
    want = np.mean([ref_kl_smoothed(p[i], q[i]) for i in range(7)])
    assert losses.kl_probs_logits(t(p), t(z)).item() == pytest.approx(want, rel=1e-12)
    # uniform posteriors: H(Y|X) = H(Y) = log C
    hc, hm = losses.mi_terms(torch.full((4, 8), 1 / 8, dtype=F64), eps=0.0)
    assert hc.item() == pytest.approx(math.log(8)) and hm.item() == pytest.approx(math.log(8))


# --------------------------------------------------------------------------- VAT


def ref_vat(model: Linear, x, p, eps, d) -> float:
    """R_VAT for a fixed unit direction d: mean_i KL_smoothed(p_i ‖ softmax(W(x_i + eps_i d_i) + b))."""
    out = 0.0
    for i in range(len(x)):
        q = np_softmax(model.np(x[i] + eps[i] * d[i]))
        out += ref_kl_smoothed(p[i], q)
    return out / len(x)


def test_vat_loss_without_power_iteration_matches_reference():
    rng = np.random.default_rng(1)
    model = Linear(rng, 4, 3)
    x = rng.standard_normal((5, 4))
    p = np_softmax(model.np(x))
    eps = rng.uniform(0.1, 1.0, 5)
    d = rng.standard_normal((5, 4))
    d /= np.linalg.norm(d, axis=1, keepdims=True)
    got = losses.vat_loss(model, t(x), t(p), t(eps), xi=0.3, n_power=0, d=t(d))
    assert got.item() == pytest.approx(ref_vat(model, x, p, eps, d), rel=1e-12)
    assert got.item() > 1e-4                                   # a real perturbation, not KL(p‖p)
    # the random start drawn from the generator: N(0, I) rows scaled to unit norm
    g = torch.Generator().manual_seed(7)
    d_gen = torch.randn((5, 4), generator=torch.Generator().manual_seed(7), dtype=F64)
    d_gen = (d_gen / d_gen.norm(dim=1, keepdim=True)).numpy()
    got = losses.vat_loss(model, t(x), t(p), t(eps), xi=0.3, n_power=0, generator=g)
    assert got.item() == pytest.approx(ref_vat(model, x, p, eps, d_gen), rel=1e-12)
    # a scalar radius is the same as a constant per-sample one
    a = losses.vat_loss(model, t(x), t(p), 0.4, xi=0.3, n_power=0, d=t(d))
    assert a.item() == pytest.approx(ref_vat(model, x, p, np.full(5, 0.4), d), rel=1e-12)


def numeric_direction(model: Linear, x, p, xi, d, h=1e-6) -> np.ndarray:
    """One power iteration by central finite differences of the batch-mean smoothed KL w.r.t. d."""
    def total(dd):
        return np.mean([ref_kl_smoothed(p[i], np_softmax(model.np(x[i] + xi * dd[i])))
                        for i in range(len(x))])
    g = np.zeros_like(d)
    for i in range(d.shape[0]):
        for j in range(d.shape[1]):
            e = np.zeros_like(d)
            e[i, j] = h
            g[i, j] = (total(d + e) - total(d - e)) / (2 * h)
    return g / np.linalg.norm(g, axis=1, keepdims=True)


def test_vat_power_iteration_direction_matches_finite_differences():
    rng = np.random.default_rng(2)
    model = Linear(rng, 4, 3, scale=2.0)
    x = rng.standard_normal((3, 4))
    p = np_softmax(model.np(x) + rng.standard_normal((3, 3)))   # a target other than the model's own
    d0 = rng.standard_normal((3, 4))
    d0 /= np.linalg.norm(d0, axis=1, keepdims=True)
    xi = 0.5
    d1 = numeric_direction(model, x, p, xi, d0)
    got1 = losses.vat_direction(model, t(x), t(p), xi, n_power=1, d=t(d0)).numpy()
    np.testing.assert_allclose(got1, d1, atol=1e-7)
    assert np.abs(d1 - d0).max() > 0.1                          # the iteration did move the direction
    d2 = numeric_direction(model, x, p, xi, d1)
    got2 = losses.vat_direction(model, t(x), t(p), xi, n_power=2, d=t(d0)).numpy()
    np.testing.assert_allclose(got2, d2, atol=1e-6)
    np.testing.assert_allclose(np.linalg.norm(got2, axis=1), 1, atol=1e-12)


def test_vat_zero_gradient_keeps_direction():
    x = torch.randn(4, 3, dtype=F64)
    const = torch.tensor([0.3, -0.2, 0.5], dtype=F64)
    d0 = torch.nn.functional.normalize(torch.randn(4, 3, dtype=F64), dim=1)
    out = losses.vat_direction(lambda v: v[:, :1] * 0 + const, x, torch.softmax(const, 0).expand(4, 3),
                               0.1, n_power=1, d=d0)
    assert torch.equal(out, d0)


def test_vat_power_iteration_leaves_no_parameter_grads():
    torch.manual_seed(0)
    model = mlp()
    x = torch.randn(8, 6, dtype=F64)
    p = torch.softmax(model(x), 1).detach()
    eps = torch.rand(8, dtype=F64) + 0.5
    d = losses.vat_direction(model, x, p, 0.1, n_power=2, generator=torch.Generator().manual_seed(3))
    assert all(q.grad is None for q in model.parameters())
    loss = losses.vat_loss(model, x, p, eps, 0.1, n_power=2, generator=torch.Generator().manual_seed(3))
    loss.backward()
    grads = [q.grad.clone() for q in model.parameters()]
    model.zero_grad(set_to_none=True)
    losses.kl_probs_logits(p, model(x + eps[:, None] * d)).backward()
    for g, q in zip(grads, model.parameters(), strict=True):
        torch.testing.assert_close(g, q.grad, rtol=0, atol=1e-14)
    assert max(g.abs().max().item() for g in grads) > 1e-6


# --------------------------------------------------------------------------- mixup (VMT)


def test_mixup_loss_matches_reference_with_fixed_draws():
    rng = np.random.default_rng(3)
    model = Linear(rng, 4, 5)
    x = rng.standard_normal((6, 4))
    z = rng.standard_normal((6, 5)) * 2
    lam = rng.uniform(size=6)
    perm = rng.permutation(6)
    ref = 0.0
    for i in range(6):
        xm = lam[i] * x[i] + (1 - lam[i]) * x[perm[i]]
        zm = lam[i] * z[i] + (1 - lam[i]) * z[perm[i]]
        ref += ref_kl(np_softmax(zm), np_softmax(model.np(xm)))
    ref /= 6
    got = losses.mixup_loss(model, t(x), t(z), lam=t(lam), perm=torch.tensor(perm))
    assert got.item() == pytest.approx(ref, rel=1e-12)
    # the draws from a generator are the permutation first, then λ
    g1, g2 = torch.Generator().manual_seed(5), torch.Generator().manual_seed(5)
    got = losses.mixup_loss(model, t(x), t(z), alpha=0.7, generator=g1)
    perm2 = torch.randperm(6, generator=g2)
    lam2 = losses.sample_beta(6, 0.7, t(x), g2)
    want = losses.mixup_loss(model, t(x), t(z), lam=lam2, perm=perm2)
    assert got.item() == want.item()
    # the clean logits are a fixed target: no gradient flows into them
    zt = t(z).requires_grad_(True)
    losses.mixup_loss(model, t(x), zt, generator=torch.Generator().manual_seed(1)).backward()
    assert zt.grad is None and model.tW.grad.abs().max() > 0


def test_sample_beta_distribution_and_reproducibility():
    like = torch.zeros(1, dtype=F64)
    for alpha in (0.5, 1.0, 2.0):
        lam = losses.sample_beta(4000, alpha, like, torch.Generator().manual_seed(11)).numpy()
        assert lam.min() > 0 and lam.max() < 1
        assert stats.kstest(lam, stats.beta(alpha, alpha).cdf).pvalue > 0.01
        # a Beta(α, α) that is not this one is rejected: the test has power
        assert stats.kstest(lam, stats.beta(2 * alpha, 2 * alpha).cdf).pvalue < 1e-3
    a = losses.sample_beta(50, 0.3, like, torch.Generator().manual_seed(4))
    b = losses.sample_beta(50, 0.3, like, torch.Generator().manual_seed(4))
    assert torch.equal(a, b)
    with pytest.raises(ValueError):
        losses.sample_beta(3, 0.0, like)


# --------------------------------------------------------------------------- SupCon


def ref_supcon(feat: np.ndarray, labels: np.ndarray, tau: float, tau_b: float) -> float:
    """Literal SupCon: feat (B, V, D); anchors are all B·V rows (view-major); no positive: skipped."""
    b, v, _ = feat.shape
    rows = [(feat[i, k] / np.linalg.norm(feat[i, k]), labels[i]) for k in range(v) for i in range(b)]
    per_anchor = []
    for a, (ha, ya) in enumerate(rows):
        others = [j for j in range(len(rows)) if j != a]
        denom = sum(math.exp(ha @ rows[j][0] / tau) for j in others)
        pos = [j for j in others if rows[j][1] == ya]
        if not pos:
            continue
        per_anchor.append(-(tau / tau_b) * np.mean([math.log(math.exp(ha @ rows[j][0] / tau) / denom)
                                                     for j in pos]))
    return float(np.mean(per_anchor))


def test_supcon_matches_literal_loop_with_singletons_excluded():
    rng = np.random.default_rng(4)
    feat = rng.standard_normal((9, 2, 5)) * 3
    labels = np.array([0, 0, 1, 2, 2, 2, 3, 4, 1])             # 3 and 4 are singletons
    for v, tau, tau_b in ((1, 0.07, 0.07), (1, 0.5, 0.07), (2, 0.2, 0.1)):
        f = feat[:, :v]
        got = losses.supcon_loss(t(f if v > 1 else f[:, 0]), torch.tensor(labels), tau, tau_b)
        assert got.item() == pytest.approx(ref_supcon(f, labels, tau, tau_b), rel=1e-10)


def test_supcon_all_positive_formula_and_degenerate_batches():
    rng = np.random.default_rng(5)
    f = rng.standard_normal((6, 4))
    h = f / np.linalg.norm(f, axis=1, keepdims=True)
    tau = 0.3
    s = h @ h.T / tau
    # one cluster: every other row is a positive; loss = mean_i mean_{j≠i} (log Σ_{a≠i} e^{s_ia} − s_ij)
    lse = np.array([np.log(np.exp(np.delete(s[i], i)).sum()) for i in range(6)])
    want = np.mean([np.mean(lse[i] - np.delete(s[i], i)) for i in range(6)])
    got = losses.supcon_loss(t(f), torch.zeros(6, dtype=torch.long), tau, tau)
    assert got.item() == pytest.approx(want, rel=1e-12)
    # identical features in one cluster: every log-probability is −log(n − 1)
    got = losses.supcon_loss(torch.ones(5, 3, dtype=F64), torch.zeros(5, dtype=torch.long), 0.07, 0.14)
    assert got.item() == pytest.approx(0.5 * math.log(4), rel=1e-12)
    # all singletons, one view: no anchor has a positive -> 0, finite zero gradient, no NaN
    ft = t(f * 50).requires_grad_(True)
    loss = losses.supcon_loss(ft, torch.arange(6), 0.07)
    loss.backward()
    assert loss.item() == 0.0 and torch.equal(ft.grad, torch.zeros_like(ft))
    # all singletons with two views: each anchor's other view is its positive
    f2 = t(rng.standard_normal((6, 2, 4)) * 50).requires_grad_(True)
    loss = losses.supcon_loss(f2, torch.arange(6), 0.07)
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(f2.grad).all() and f2.grad.abs().max() > 0
    # one huge cluster of large, nearly equal logits in float32: finite
    big = (torch.randn(64, 10) * 1e-3 + 1e4).requires_grad_(True)
    loss = losses.supcon_loss(big, torch.zeros(64, dtype=torch.long), 0.07)
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(big.grad).all()
    # a single sample
    assert losses.supcon_loss(torch.ones(1, 3), torch.zeros(1, dtype=torch.long)).item() == 0.0


# --------------------------------------------------------------------------- InfoNCE


def test_info_nce_matches_loop_and_supcon_identity():
    rng = np.random.default_rng(6)
    z1, z2 = rng.standard_normal((5, 4)), rng.standard_normal((5, 4))
    tau = 0.2
    h = np.concatenate([z1, z2])
    h /= np.linalg.norm(h, axis=1, keepdims=True)
    total = 0.0
    for i in range(10):
        pos = (i + 5) % 10
        denom = sum(math.exp(h[i] @ h[a] / tau) for a in range(10) if a != i)
        total += -math.log(math.exp(h[i] @ h[pos] / tau) / denom)
    got = losses.info_nce(t(z1), t(z2), tau)
    assert got.item() == pytest.approx(total / 10, rel=1e-12)
    # NT-Xent is SupCon with one label per instance and two views (τ_b = τ)
    sc = losses.supcon_loss(torch.stack([t(z1), t(z2)], 1), torch.arange(5), tau, tau)
    assert got.item() == pytest.approx(sc.item(), rel=1e-12)


# --------------------------------------------------------------------------- CAMSAT terms


def test_aug_loss_matches_loop_and_accepts_list_or_tensor():
    rng = np.random.default_rng(7)
    p = np_softmax(rng.standard_normal((4, 6)))
    zs = rng.standard_normal((3, 4, 6)) * 2
    want = np.mean([np.mean([ref_kl_smoothed(p[i], np_softmax(zs[k, i])) for k in range(3)])
                    for i in range(4)])
    assert losses.aug_loss(t(p), t(zs)).item() == pytest.approx(want, rel=1e-12)
    assert losses.aug_loss(t(p), [t(z) for z in zs]).item() == pytest.approx(want, rel=1e-12)
    with pytest.raises(ValueError):
        losses.aug_loss(t(p), t(zs[0]))


def test_symmetry_loss_matches_loop_and_js_closed_form():
    rng = np.random.default_rng(8)
    zs = rng.standard_normal((3, 4, 6)) * 2
    ps = np_softmax(zs)
    want = 0.0
    for i in range(4):
        m = ps[:, i].mean(0)
        want += np.mean([ref_kl(ps[k, i], m) for k in range(3)])
    assert losses.symmetry_loss(t(zs)).item() == pytest.approx(want / 4, rel=1e-12)
    # two views: the Jensen–Shannon divergence, H(m) − (H(p) + H(q))/2
    js = np.mean([ref_entropy_row((ps[0, i] + ps[1, i]) / 2, 0)
                  - (ref_entropy_row(ps[0, i], 0) + ref_entropy_row(ps[1, i], 0)) / 2 for i in range(4)])
    assert losses.symmetry_loss([t(zs[0]), t(zs[1])]).item() == pytest.approx(js, rel=1e-12)
    assert js > 0.01
    # with the clean posterior in the mixture (AugMix): JS over the 3 distributions, a zero entry included
    pc = np_softmax(rng.standard_normal((4, 6)))
    pc[0] = [0.5, 0.5, 0, 0, 0, 0]
    want = 0.0
    for i in range(4):
        dists = [ps[0, i], ps[1, i], pc[i]]
        m = np.mean(dists, axis=0)
        want += np.mean([ref_kl(d, m) for d in dists])
    pct = t(pc).requires_grad_(True)
    got = losses.symmetry_loss(t(zs[:2]), include_clean=pct)
    got.backward()
    assert got.item() == pytest.approx(want / 4, rel=1e-12)
    assert torch.isfinite(pct.grad).all()
    # identical views: zero
    assert losses.symmetry_loss(t(np.stack([zs[0], zs[0]]))).item() == pytest.approx(0, abs=1e-15)


# --------------------------------------------------------------------------- VICReg


def test_vicreg_terms_match_numpy():
    rng = np.random.default_rng(9)
    z = rng.standard_normal((12, 5)) * np.array([0.2, 0.5, 1.0, 2.0, 0.05])
    z[:, 1] += 0.8 * z[:, 0] * 4                              # correlated columns
    std = np.sqrt(z.var(axis=0, ddof=1) + 1e-4)
    want_var = np.mean(np.maximum(0, 1.0 - std))
    assert losses.vicreg_variance(t(z)).item() == pytest.approx(want_var, rel=1e-12)
    assert losses.vicreg_variance(t(z), gamma=0.5).item() == pytest.approx(
        np.mean(np.maximum(0, 0.5 - std)), rel=1e-12)
    cov = np.cov(z, rowvar=False)
    want_cov = sum(cov[i, j] ** 2 for i in range(5) for j in range(5) if i != j) / 5
    assert losses.vicreg_covariance(t(z)).item() == pytest.approx(want_cov, rel=1e-12)


# --------------------------------------------------------------------------- gradients reach the model


def test_every_loss_sends_gradient_to_model_parameters():
    torch.manual_seed(1)
    model = mlp(d=6, c=5)
    x = torch.randn(16, 6, dtype=F64)
    gen = torch.Generator().manual_seed(0)

    def views():
        return [model(x + 0.3 * torch.randn(16, 6, dtype=F64, generator=gen)) for _ in range(2)]

    terms = {
        "mi": lambda: (lambda h: h[0] - 4 * h[1])(losses.mi_terms(torch.softmax(model(x), 1))),
        "kl": lambda: losses.kl_probs_logits(torch.softmax(model(x), 1).detach().flip(0), model(x)),
        "vat": lambda: losses.vat_loss(model, x, torch.softmax(model(x), 1).detach(),
                                       torch.full((16,), 0.5, dtype=F64), 0.1, generator=gen),
        "mixup": lambda: losses.mixup_loss(model, x, model(x).detach(), generator=gen),
        "supcon": lambda: (lambda z: losses.supcon_loss(z, z.argmax(1)))(model(x)),
        "aug": lambda: losses.aug_loss(torch.softmax(model(x), 1), views()),
        "symmetry": lambda: losses.symmetry_loss(views()),
        "symmetry_clean": lambda: losses.symmetry_loss(views(), include_clean=torch.softmax(model(x), 1)),
        "info_nce": lambda: losses.info_nce(model(x), views()[0]),
        "vicreg_var": lambda: losses.vicreg_variance(model(x)),
        "vicreg_cov": lambda: losses.vicreg_covariance(model(x)),
    }
    for name, fn in terms.items():
        model.zero_grad(set_to_none=True)
        loss = fn()
        assert loss.dim() == 0 and torch.isfinite(loss), name
        loss.backward()
        g = torch.cat([q.grad.flatten() for q in model.parameters()])
        assert torch.isfinite(g).all() and g.abs().max() > 1e-8, name


# --------------------------------------------------------------------------- kNN distances


def sklearn_kth(X: np.ndarray, kk: int) -> np.ndarray:
    """k-th other neighbour by scikit-learn's exact ball tree (query = training: self excluded)."""
    nn = NearestNeighbors(n_neighbors=kk, algorithm="ball_tree").fit(X)
    return nn.kneighbors(return_distance=True)[0][:, kk - 1]


def imsat_calculate_distance(X: np.ndarray, k: int) -> np.ndarray:
    """IMSAT's calculate_distance.py, literally: all distances, self set to 1000, sort, index k."""
    out = np.empty(len(X))
    for i in range(len(X)):
        dist = np.sqrt(((X - X[i]) ** 2).sum(axis=1))
        dist[i] = 1000
        out[i] = np.sort(dist)[k]
    return out


@pytest.fixture(scope="module")
def knn_data() -> np.ndarray:
    rng = np.random.default_rng(10)
    centres = rng.standard_normal((12, 16)) * 3
    X = centres[rng.integers(0, 12, 700)] + rng.standard_normal((700, 16))
    X[650:660] = X[3]                                          # duplicates of row 3: neighbours at distance 0
    return X


def test_kth_neighbor_distance_matches_sklearn_and_imsat(knn_data):
    X = knn_data
    for k in (1, 5, 10):
        want = sklearn_kth(X, k)
        for chunk in (64, 69, 250, 10000):    # many blocks; a last block of 10 rows (< k + spares); one block
            np.testing.assert_allclose(knn.kth_neighbor_distance(X, k, chunk_size=chunk), want,
                                       rtol=1e-12, atol=1e-12)
    assert (sklearn_kth(X, 5)[[3, 650]] == 0).all()
    got = knn.kth_neighbor_distance(X, 10, include_self_offset=True, chunk_size=128)
    np.testing.assert_allclose(got, imsat_calculate_distance(X, 10), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(got, sklearn_kth(X, 11), rtol=1e-12, atol=1e-12)
    assert (got >= knn.kth_neighbor_distance(X, 10)).all() and (got > knn.kth_neighbor_distance(X, 10)).any()


def test_kth_neighbor_distance_float32_offset_and_small_inputs():
    rng = np.random.default_rng(11)
    X = rng.standard_normal((300, 8)).astype(np.float32)
    want = sklearn_kth(X.astype(np.float64), 4)
    np.testing.assert_allclose(knn.kth_neighbor_distance(X, 4, chunk_size=100), want, rtol=1e-12, atol=1e-12)
    # far from the origin: the float32 ‖a‖² + ‖b‖² − 2a·b would rank garbage without the centring
    Xf = rng.standard_normal((300, 8)) + 1e4
    np.testing.assert_allclose(knn.kth_neighbor_distance(Xf, 4, chunk_size=100), sklearn_kth(Xf, 4),
                               rtol=1e-9)
    # N = k + 1: the k-th other is the farthest point
    Xs = rng.standard_normal((4, 3))
    np.testing.assert_allclose(knn.kth_neighbor_distance(Xs, 3), sklearn_kth(Xs, 3), rtol=1e-12)
    with pytest.raises(ValueError):
        knn.kth_neighbor_distance(Xs, 3, include_self_offset=True)
    with pytest.raises(ValueError):
        knn.kth_neighbor_distance(Xs, 0)


def test_kth_neighbor_distance_resolves_float32_ties_exactly():
    # row 0 has 12 neighbours whose distances differ by 1e-9 (equal in float32), in reverse index order,
    # then far points: the float64 re-ranking of the spare candidates must still find the exact 5th
    rng = np.random.default_rng(13)
    u = rng.standard_normal((12, 3))
    u /= np.linalg.norm(u, axis=1, keepdims=True)
    near = u * (1 + np.arange(11, -1, -1)[:, None] * 1e-9)
    X = np.concatenate([np.zeros((1, 3)), near, rng.standard_normal((40, 3)) * 0.3 + 10])
    got = knn.kth_neighbor_distance(X, 5)
    assert got[0] == pytest.approx(1 + 4e-9, rel=1e-14)
    np.testing.assert_allclose(got, sklearn_kth(X, 5), rtol=1e-14)


def test_fingerprint_sees_rows_outside_its_sample():
    X = np.random.default_rng(14).standard_normal((10000, 3))
    Y = X.copy()
    Y[1, 2] += 1e-3                                      # stride 2: row 1 is not in the row sample
    assert knn.fingerprint(X) == knn.fingerprint(X.copy()) != knn.fingerprint(Y)
    assert knn.fingerprint(X) != knn.fingerprint(X[:-1])


class FakeFaiss(types.ModuleType):
    """A stand-in for faiss (exact brute force, ties by index), counting searches."""

    searches = 0

    class IndexFlatL2:
        def __init__(self, d):
            self.X = np.zeros((0, d), dtype=np.float32)

        def add(self, X):
            self.X = np.asarray(X, dtype=np.float32)

        def search(self, Q, k):
            FakeFaiss.searches += 1
            d2 = ((Q[:, None, :].astype(np.float64) - self.X[None].astype(np.float64)) ** 2).sum(-1)
            idx = np.argsort(d2, axis=1, kind="stable")[:, :k]
            return np.take_along_axis(d2, idx, 1).astype(np.float32), idx


def test_faiss_backend_gives_the_same_result(knn_data, monkeypatch):
    fake = FakeFaiss("faiss")
    monkeypatch.setitem(sys.modules, "faiss", fake)
    X = knn_data.copy()
    X[100:115] = X[20]                                  # 16 equal rows: some lose "self" among the ties
    got = knn.kth_neighbor_distance(X, 1, backend="faiss")
    assert FakeFaiss.searches == 1
    np.testing.assert_allclose(got, sklearn_kth(X, 1), rtol=1e-12, atol=1e-12)
    monkeypatch.setattr(knn, "FAISS_MIN_N", 500)        # auto: faiss once N is large enough
    got = knn.kth_neighbor_distance(X, 10, include_self_offset=True)
    assert FakeFaiss.searches == 2
    np.testing.assert_allclose(got, imsat_calculate_distance(X, 10), rtol=1e-12, atol=1e-12)
    knn.kth_neighbor_distance(X[:400], 10)
    assert FakeFaiss.searches == 2                      # small N stays on torch


def test_real_faiss_if_installed(knn_data):
    pytest.importorskip("faiss")
    np.testing.assert_allclose(knn.kth_neighbor_distance(knn_data, 10, backend="faiss"),
                               sklearn_kth(knn_data, 10), rtol=1e-12, atol=1e-12)


def test_knn_cache_round_trip(knn_data, tmp_path, monkeypatch):
    calls = []
    real = knn._torch_candidates

    def counting(*a, **kw):
        calls.append(1)
        return real(*a, **kw)

    monkeypatch.setattr(knn, "_torch_candidates", counting)
    path = tmp_path / "sub" / "knn10.npy"
    X = knn_data.copy()
    first = knn.kth_neighbor_distance(X, 10, cache=path)
    assert len(calls) == 1 and path.is_file()
    meta = json.loads(path.with_name("knn10.npy.json").read_text())
    assert meta["n"] == 700 and meta["k"] == 10 and meta["include_self_offset"] is False
    again = knn.kth_neighbor_distance(X, 10, cache=path)
    assert len(calls) == 1 and np.array_equal(first, again)            # loaded, not recomputed
    knn.kth_neighbor_distance(X, 9, cache=path)                         # other k
    knn.kth_neighbor_distance(X, 9, include_self_offset=True, cache=path)  # other flag
    assert len(calls) == 3
    X[1, 0] += 0.5                                       # one changed value
    changed = knn.kth_neighbor_distance(X, 9, include_self_offset=True, cache=path)
    assert len(calls) == 4
    np.testing.assert_allclose(changed, imsat_calculate_distance(X, 9), rtol=1e-12, atol=1e-12)
    knn.kth_neighbor_distance(X[:-1], 9, include_self_offset=True, cache=path)   # other N
    assert len(calls) == 5
    path.with_name("knn10.npy.json").unlink()            # metadata gone (e.g. a crash): recompute
    knn.kth_neighbor_distance(X[:-1], 9, include_self_offset=True, cache=path)
    assert len(calls) == 6
    assert sorted(p.name for p in path.parent.iterdir()) == ["knn10.npy", "knn10.npy.json"]


# --------------------------------------------------------------------------- i-vector-space views


def test_ivector_augment_is_deterministic_and_views_differ():
    rng = np.random.default_rng(12)
    x = torch.nn.functional.normalize(torch.tensor(rng.standard_normal((32, 20)), dtype=torch.float32), dim=1)
    delta = torch.rand(32) + 0.1
    aug = IvectorAugment(types=["noise", "mask", "scale"], noise_scale=0.3, mask_prob=0.2, scale_range=0.2)
    a = aug.views(x, delta, 3, torch.Generator().manual_seed(0))
    b = aug.views(x, delta, 3, torch.Generator().manual_seed(0))
    c = aug.views(x, delta, 3, torch.Generator().manual_seed(1))
    assert all(torch.equal(u, v) for u, v in zip(a, b, strict=True))
    assert not torch.equal(a[0], c[0]) and not torch.equal(a[0], a[1]) and not torch.equal(a[1], a[2])
    for v in a:
        torch.testing.assert_close(v.norm(dim=1), torch.ones(32))
    with pytest.raises(ValueError):
        IvectorAugment(types=["noise", "rotate"])
    with pytest.raises(ValueError):
        aug(x)                                            # noise needs delta


def test_ivector_augment_noise_follows_delta_and_mask_scale_ranges():
    d = 400
    x = torch.zeros(300, d, dtype=F64) + 0.05
    delta = torch.logspace(-3, 0, 300, dtype=F64)
    noise = IvectorAugment(types=["noise"], noise_scale=0.25, renormalize=False)
    diff = noise(x, delta, torch.Generator().manual_seed(0)) - x
    ratio = (diff.norm(dim=1) / (0.25 * delta)).numpy()  # the noise vector's length / (scale · δ_i)
    assert abs(ratio.mean() - 1) < 0.01 and ratio.min() > 0.85 and ratio.max() < 1.15
    slope = np.polyfit(np.log(delta.numpy()), np.log(diff.norm(dim=1).numpy()), 1)[0]
    assert slope == pytest.approx(1.0, abs=0.02)
    mask = IvectorAugment(types=["mask"], mask_prob=0.3, renormalize=False)
    kept = (mask(x, None, torch.Generator().manual_seed(1)) != 0).double().mean().item()
    assert kept == pytest.approx(0.7, abs=0.01)
    scale = IvectorAugment(types=["scale"], scale_range=(0.5, 0.8), renormalize=False)
    f = (scale(x, None, torch.Generator().manual_seed(2)) / x).numpy()
    assert f.min() >= 0.5 and f.max() <= 0.8 and f.std() > 0.05 and np.unique(f[0]).size == d
    per_sample = IvectorAugment(types=["scale"], scale_range=0.1, renormalize=False, scale_per="sample")
    f = (per_sample(x, None, torch.Generator().manual_seed(2)) / x).numpy()
    assert np.allclose(f, f[:, :1]) and f.min() >= 0.9 and f.max() <= 1.1
