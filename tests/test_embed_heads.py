"""Classification heads (docs/network.md §3, §4.3): every per-sample loss against its formula in numpy float64
(B = 5, E = 8, K = 4), the margin-0 reductions, ArcFace's fallback region and its continuity, both OC-Softmax
negative modes, AdaFace with known statistics and its EMA, the mixed loss, predict, update and the gradients
at cos = ±1."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from sslsv.embed.heads import HEADS, AAMHead, AdaFaceHead, build_head

B, E, K = 5, 8, 4
LABELS = np.array([0, 3, 1, 1, 2])


def make(name: str, seed: int = 0, **params) -> torch.nn.Module:
    torch.manual_seed(seed)
    return build_head(name, E, K, **params).double()


def batch(seed: int = 1, scale: float = 3.0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return scale * torch.randn(B, E, generator=g, dtype=torch.float64), torch.as_tensor(LABELS)


def np_cos(head, emb: torch.Tensor) -> np.ndarray:
    e, w = emb.detach().numpy(), head.weight.detach().numpy()
    return (e / np.linalg.norm(e, axis=1, keepdims=True)) @ (w / np.linalg.norm(w, axis=1, keepdims=True)).T


def np_ce(logits: np.ndarray, y: np.ndarray) -> np.ndarray:
    mx = logits.max(axis=1, keepdims=True)
    lse = mx[:, 0] + np.log(np.exp(logits - mx).sum(axis=1))
    return lse - logits[np.arange(len(y)), y]


def with_target(c: np.ndarray, y: np.ndarray, target: np.ndarray) -> np.ndarray:
    out = c.copy()
    out[np.arange(len(y)), y] = target
    return out


def softplus(x: np.ndarray) -> np.ndarray:
    return np.logaddexp(0, x)


# ---- formulas -------------------------------------------------------------------------------------------

def test_defaults_and_final_margins() -> None:
    expect = {"am": (30.0, 0.2), "cosface": (64.0, 0.35), "aam": (32.0, 0.2), "adaface": (32.0, 0.2)}
    for name, (s, m) in expect.items():
        h = build_head(name, E, K)
        assert (h.scale, h.margin, h.final_margin) == (s, m, m), name
        assert sum(p.numel() for p in h.parameters()) == K * E                # no bias (docs/network.md §1.4)
    assert build_head("softmax", E, K).final_margin is None
    oc = build_head("ocsoftmax", E, K)
    assert oc.final_margin is None and (oc.alpha, oc.m_pos, oc.m_neg, oc.negatives) == (20, 0.9, 0.2, "mean")
    assert sum(p.numel() for p in build_head("softmax", E, K).parameters()) == 2 * E + E * K + K
    aam = build_head("aam", E, K)
    assert aam.fallback == "wespeaker" and aam.easy_margin is False
    ada = build_head("adaface", E, K)
    assert (ada.h, ada.t_alpha, float(ada.batch_mean), float(ada.batch_std)) == (0.333, 0.01, 20.0, 100.0)


def test_xavier_uniform_init() -> None:
    torch.manual_seed(0)
    w = build_head("aam", 192, 1000).weight.detach()
    bound = math.sqrt(6 / (192 + 1000))
    assert w.abs().max() <= bound and w.abs().max() > 0.99 * bound
    assert abs(w.var().item() - bound ** 2 / 3) < 0.02 * bound ** 2


@pytest.mark.parametrize("name, s, m", [("am", 30.0, 0.2), ("cosface", 64.0, 0.35)])
def test_add_margin_loss(name: str, s: float, m: float) -> None:
    head = make(name)
    emb, y = batch()
    c = np_cos(head, emb)
    ref = np_ce(s * with_target(c, LABELS, c[np.arange(B), LABELS] - m), LABELS)
    np.testing.assert_allclose(head.loss_per_sample(emb, y).detach().numpy(), ref, rtol=1e-12)
    np.testing.assert_allclose(head.cosine(emb).detach().numpy(), c, atol=1e-14)


def test_softmax_loss_train_and_eval() -> None:
    head = make("softmax")
    g = torch.Generator().manual_seed(5)
    with torch.no_grad():
        head.bn.weight.copy_(1 + 0.3 * torch.randn(E, generator=g))
        head.bn.bias.copy_(0.3 * torch.randn(E, generator=g))
        head.bn.running_mean.copy_(torch.randn(E, generator=g))
        head.bn.running_var.copy_(0.5 + torch.rand(E, generator=g))
    emb, y = batch()
    e = emb.numpy()
    gam, bet = head.bn.weight.detach().numpy(), head.bn.bias.detach().numpy()
    w, b = head.linear.weight.detach().numpy(), head.linear.bias.detach().numpy()
    rm, rv = head.bn.running_mean.numpy().copy(), head.bn.running_var.numpy().copy()
    # training mode: batch statistics (biased variance)
    xn = (e - e.mean(0)) / np.sqrt(e.var(0) + 1e-5) * gam + bet
    ref = np_ce(np.maximum(xn, 0) @ w.T + b, LABELS)
    np.testing.assert_allclose(head.train().loss_per_sample(emb, y).detach().numpy(), ref, rtol=1e-10)
    # predict in training mode uses the batch statistics but leaves the running ones alone
    stats_before = head.bn.running_mean.clone()
    assert np.array_equal(head.predict(emb).numpy(), (np.maximum(xn, 0) @ w.T + b).argmax(1))
    assert torch.equal(head.bn.running_mean, stats_before)
    # eval mode: running statistics (those after the one training forward)
    rm, rv = 0.9 * rm + 0.1 * e.mean(0), 0.9 * rv + 0.1 * e.var(0, ddof=1)
    np.testing.assert_allclose(head.bn.running_mean.numpy(), rm, rtol=1e-12)
    xn = (e - rm) / np.sqrt(rv + 1e-5) * gam + bet
    logits = np.maximum(xn, 0) @ w.T + b
    head.eval()
    got = head.loss_per_sample(emb, y).detach().numpy()
    np.testing.assert_allclose(got, np_ce(logits, LABELS), rtol=1e-10)
    np.testing.assert_allclose(head.logits(emb, y).detach().numpy(), logits, rtol=1e-12)
    with pytest.raises(NotImplementedError):
        head.cosine(emb)


def aam_target(c: np.ndarray, m: float, fallback: str) -> np.ndarray:
    theta = np.arccos(c)
    psi = np.cos(theta + m)
    fb = c - (1 + np.cos(np.pi - m)) if fallback == "wespeaker" else c - m * np.sin(m)
    return np.where(c > np.cos(np.pi - m), psi, fb)


def unit_at_angle(head, k: int, phi: np.ndarray, seed: int = 9) -> torch.Tensor:
    """Embeddings at angle phi[i] from centre k (scaled by 2.5), so cos θ_k = cos phi exactly."""
    w = head.weight.detach()[k]
    w = w / w.norm()
    g = torch.Generator().manual_seed(seed)
    r = torch.randn(len(phi), E, generator=g, dtype=torch.float64)
    u = r - (r @ w)[:, None] * w
    u = u / u.norm(dim=1, keepdim=True)
    phi_t = torch.as_tensor(phi)
    return 2.5 * (torch.cos(phi_t)[:, None] * w + torch.sin(phi_t)[:, None] * u)


@pytest.mark.parametrize("fallback", ["wespeaker", "insightface"])
def test_aam_loss_including_fallback_region(fallback: str) -> None:
    m = 0.2
    head = make("aam", fallback=fallback)
    emb, y = batch()
    # rows 3 and 4 are pushed beyond π − m from their target centre: θ_y + m > π
    emb[3] = unit_at_angle(head, 1, np.array([np.pi - 0.1]))[0]
    emb[4] = unit_at_angle(head, 2, np.array([3.1]))[0]
    c = np_cos(head, emb)
    cy = c[np.arange(B), LABELS]
    assert (cy[3:] < np.cos(np.pi - m)).all() and (cy[:3] > np.cos(np.pi - m)).all()
    ref = np_ce(32 * with_target(c, LABELS, aam_target(cy, m, fallback)), LABELS)
    np.testing.assert_allclose(head.loss_per_sample(emb, y).detach().numpy(), ref, rtol=1e-10)
    target = head.logits(emb, y).detach().numpy()[np.arange(B), LABELS] / 32
    offset = 1 + np.cos(np.pi - m) if fallback == "wespeaker" else m * np.sin(m)
    np.testing.assert_allclose(target[3:], cy[3:] - offset, atol=1e-12)
    np.testing.assert_allclose(target[:3], np.cos(np.arccos(cy[:3]) + m), atol=1e-12)


def test_aam_fallback_continuity_at_threshold() -> None:
    m, d = 0.2, 1e-7
    jumps = {}
    for fallback in ("wespeaker", "insightface"):
        head = make("aam", fallback=fallback)
        emb = unit_at_angle(head, 0, np.array([np.pi - m - d, np.pi - m + d]))
        t = head.logits(emb, torch.zeros(2, dtype=torch.long)).detach().numpy()[:, 0] / 32
        jumps[fallback] = t[0] - t[1]
        assert t[0] == pytest.approx(-1.0, abs=1e-6)            # cos(θ + m) → cos π at the threshold
    assert abs(jumps["wespeaker"]) < 1e-6
    # insightface: −1 vs −cos m − m sin m, a jump of cos m + m sin m − 1 ≈ 0.0198 for m = 0.2
    assert jumps["insightface"] == pytest.approx(math.cos(m) + m * math.sin(m) - 1, abs=1e-6)
    assert 0.019 < jumps["insightface"] < 0.021


def test_aam_easy_margin() -> None:
    head = make("aam", easy_margin=True, margin=0.3)
    emb = unit_at_angle(head, 1, np.array([0.5, 1.4, 1.8, 2.9]))
    phi = np.array([0.5, 1.4, 1.8, 2.9])
    t = head.logits(emb, torch.ones(4, dtype=torch.long)).detach().numpy()[:, 1] / 32
    np.testing.assert_allclose(t, np.where(np.cos(phi) > 0, np.cos(phi + 0.3), np.cos(phi)), atol=1e-12)


@pytest.mark.parametrize("name", ["am", "cosface", "aam", "adaface"])
def test_zero_margin_is_scaled_cosine_softmax(name: str) -> None:
    head = make(name, margin=0.0)
    emb, y = batch()
    c = np_cos(head, emb)
    ref = np_ce(head.scale * c, LABELS)
    np.testing.assert_allclose(head.loss_per_sample(emb, y).detach().numpy(), ref, rtol=1e-9, atol=1e-12)


def np_oc(c: np.ndarray, y: np.ndarray, negatives: str, k: int = 10) -> np.ndarray:
    pos = softplus(20 * (0.9 - c[np.arange(len(y)), y]))
    out = []
    for i in range(len(y)):                                  # literal loop over the negatives
        negs = sorted((softplus(20 * (c[i, j] - 0.2)) for j in range(c.shape[1]) if j != y[i]), reverse=True)
        out.append(pos[i] + (np.mean(negs) if negatives == "mean" else np.mean(negs[:k])))
    return np.array(out)


@pytest.mark.parametrize("negatives, topk", [("mean", 10), ("topk", 2), ("topk", 1), ("topk", 10)])
def test_ocsoftmax_loss(negatives: str, topk: int) -> None:
    head = make("ocsoftmax", negatives=negatives, topk=topk)
    emb, y = batch()
    c = np_cos(head, emb)
    ref = np_oc(c, LABELS, negatives, topk)
    got = head.loss_per_sample(emb, y).detach().numpy()
    np.testing.assert_allclose(got, ref, rtol=1e-12)
    if negatives == "topk" and topk < K - 1:
        assert not np.allclose(got, np_oc(c, LABELS, "mean"))
    if topk >= K - 1:                                         # k beyond K − 1 negatives is the mean
        np.testing.assert_allclose(got, np_oc(c, LABELS, "mean"), rtol=1e-12)
    z = head.logits(emb, y).detach().numpy()
    ref_z = 20 * with_target(c - 0.2, LABELS, c[np.arange(B), LABELS] - 0.9)
    np.testing.assert_allclose(z, ref_z, atol=1e-12)


def test_ocsoftmax_single_class_has_no_negative_term() -> None:
    torch.manual_seed(0)
    head = build_head("ocsoftmax", E, 1).double()
    emb, _ = batch()
    c = np_cos(head, emb)[:, 0]
    np.testing.assert_allclose(head.loss_per_sample(emb, torch.zeros(B, dtype=torch.long)).detach().numpy(),
                               softplus(20 * (0.9 - c)), rtol=1e-12)


def np_adaface(c: np.ndarray, norms: np.ndarray, y: np.ndarray, mu: float, sd: float, m: float = 0.2,
               s: float = 32.0, h: float = 0.333) -> np.ndarray:
    z = np.clip(h * (np.clip(norms, 0.001, 100) - mu) / (sd + 1e-3), -1, 1)
    theta = np.arccos(np.clip(c[np.arange(len(y)), y], -1 + 1e-3, 1 - 1e-3))
    target = np.cos(np.clip(theta - m * z, 1e-3, np.pi - 1e-3)) - (m + m * z)
    return np_ce(s * with_target(c, y, target), y)


def ada_batch() -> tuple[torch.Tensor, torch.Tensor]:
    """Norms 2, 9, 14.5, 30, 150 (the last clipped to 100): margin scalers below −1, inside, and above +1."""
    emb, y = batch()
    norms = torch.tensor([2.0, 9.0, 14.5, 30.0, 150.0], dtype=torch.float64)
    return emb / emb.norm(dim=1, keepdim=True) * norms[:, None], y


def test_adaface_eval_mode_with_fixed_statistics() -> None:
    head = make("adaface").eval()
    head.batch_mean.fill_(15.0)
    head.batch_std.fill_(12.0)
    emb, y = ada_batch()
    c, norms = np_cos(head, emb), np.linalg.norm(emb.numpy(), axis=1)
    z = np.clip(0.333 * (np.clip(norms, 0.001, 100) - 15) / 12.001, -1, 1)
    assert z.min() == -1 or z.max() == 1 and (np.abs(z) < 1).any()
    ref = np_adaface(c, norms, LABELS, 15.0, 12.0)
    np.testing.assert_allclose(head.loss_per_sample(emb, y).detach().numpy(), ref, rtol=1e-10)
    assert (float(head.batch_mean), float(head.batch_std)) == (15.0, 12.0)       # eval: no EMA update


@pytest.mark.parametrize("t_alpha", [1.0, 0.01])
def test_adaface_training_updates_ema_then_uses_it(t_alpha: float) -> None:
    head = make("adaface", t_alpha=t_alpha).train()
    emb, y = ada_batch()
    c, norms = np_cos(head, emb), np.linalg.norm(emb.numpy(), axis=1)
    clipped = np.clip(norms, 0.001, 100)
    mu = t_alpha * clipped.mean() + (1 - t_alpha) * 20
    sd = t_alpha * clipped.std(ddof=1) + (1 - t_alpha) * 100
    got = head.loss_per_sample(emb, y).detach().numpy()
    assert float(head.batch_mean) == pytest.approx(mu, rel=1e-6)
    assert float(head.batch_std) == pytest.approx(sd, rel=1e-6)
    np.testing.assert_allclose(got, np_adaface(c, norms, LABELS, mu, sd), rtol=1e-6)


def test_adaface_mixed_loss_updates_ema_once() -> None:
    head = make("adaface", t_alpha=0.5).train()
    emb, y = ada_batch()
    y_b = torch.tensor([1, 3, 0, 2, 2])
    lam = torch.tensor([0.5, 0.7, 0.9, 1.0, 0.6], dtype=torch.float64)
    c, norms = np_cos(head, emb), np.linalg.norm(emb.numpy(), axis=1)
    clipped = np.clip(norms, 0.001, 100)
    mu, sd = 0.5 * clipped.mean() + 10, 0.5 * clipped.std(ddof=1) + 50
    got = head.mixed_loss_per_sample(emb, y, y_b, lam).detach().numpy()
    assert float(head.batch_mean) == pytest.approx(mu, rel=1e-6)          # once: 0.5·mean + 0.5·20
    ref = lam.numpy() * np_adaface(c, norms, LABELS, mu, sd) + (1 - lam.numpy()) * np_adaface(
        c, norms, y_b.numpy(), mu, sd)
    np.testing.assert_allclose(got, ref, rtol=1e-6)


# ---- the interface --------------------------------------------------------------------------------------

ALL = [("softmax", {}), ("am", {}), ("cosface", {}), ("aam", {}), ("aam", {"fallback": "insightface"}),
       ("ocsoftmax", {}), ("ocsoftmax", {"negatives": "topk", "topk": 2}), ("adaface", {})]


@pytest.mark.parametrize("name, params", ALL)
def test_mixed_loss_equals_weighted_separate_losses(name: str, params: dict) -> None:
    head = make(name, **params).eval()
    emb, y = batch()
    y_b = torch.tensor([2, 3, 0, 1, 0])
    lam = torch.tensor([0.5, 0.6, 0.75, 0.9, 0.99], dtype=torch.float64)
    la, lb = head.loss_per_sample(emb, y), head.loss_per_sample(emb, y_b)
    got = head.mixed_loss_per_sample(emb, y, y_b, lam)
    assert torch.allclose(got, lam * la + (1 - lam) * lb, rtol=1e-12, atol=0)
    assert not torch.allclose(got, la, rtol=1e-3)
    # y_b = y_a, or λ = 1: exactly the plain loss
    assert torch.equal(head.mixed_loss_per_sample(emb, y, y, lam), la)
    assert torch.equal(head.mixed_loss_per_sample(emb, y, y_b, torch.ones(B, dtype=torch.float64)), la)


@pytest.mark.parametrize("name, params", ALL)
def test_predict_ignores_the_margin(name: str, params: dict) -> None:
    head = make(name, **params).eval()
    emb, y = batch(scale=1.0)
    scores = head.logits(emb, y).detach() if name == "softmax" else head.cosine(emb).detach()
    pred = head.predict(emb)
    assert torch.equal(pred, scores.argmax(1)) and pred.dtype == torch.long
    if head.final_margin is not None:
        head.update(0.9)                                 # a large margin changes the logits, not predict
        assert torch.equal(head.predict(emb), pred)
    # samples built on a centre are predicted as that centre by every cosine head
    if name != "softmax":
        on_centre = head.weight.detach()[[3, 0, 2, 1, 3]] * 2
        assert head.predict(on_centre).tolist() == [3, 0, 2, 1, 3]


def test_update_changes_logits_as_expected() -> None:
    emb, y = batch()
    tgt = (np.arange(B), LABELS)
    am = make("am")
    before = am.logits(emb, y).detach().numpy()
    am.update(0.05)
    after = am.logits(emb, y).detach().numpy()
    np.testing.assert_allclose(after[tgt] - before[tgt], 30 * 0.15, rtol=1e-12)
    mask = np.ones_like(before, dtype=bool)
    mask[tgt] = False
    assert np.array_equal(after[mask], before[mask]) and am.margin == 0.05 and am.final_margin == 0.2
    # AAM: after update() the head equals one built with that margin
    for fallback in ("wespeaker", "insightface"):
        aam = make("aam", fallback=fallback)
        aam.update(0.45)
        fresh = make("aam", fallback=fallback, margin=0.45)
        assert aam.margin == fresh.margin == 0.45
        emb2 = emb.clone()
        emb2[4] = unit_at_angle(aam, 2, np.array([2.9]))[0]       # in the fallback region for m = 0.45
        assert torch.equal(aam.logits(emb2, y), fresh.logits(emb2, y))
        assert aam.final_margin == 0.2
    ada = make("adaface").eval()
    ada.update(0.0)
    c = np_cos(ada, emb)
    np.testing.assert_allclose(ada.logits(emb, y).detach().numpy(), 32 * c, atol=1e-9)
    oc = make("ocsoftmax")
    z = oc.logits(emb, y)
    oc.update(0.5)
    assert torch.equal(oc.logits(emb, y), z)


@pytest.mark.parametrize("name, params", ALL)
def test_gradients_finite_at_cos_plus_minus_one(name: str, params: dict) -> None:
    head = make(name, **params).train()
    w = head.weight.detach() if name != "softmax" else torch.randn(K, E, dtype=torch.float64)
    emb = torch.stack([w[0] * 3, -w[3], w[1], -w[1] * 0.5, w[2] * 1e-3]).requires_grad_(True)
    y = torch.tensor([0, 3, 1, 1, 2])
    loss = head.loss_per_sample(emb, y)
    assert torch.isfinite(loss).all()
    loss.sum().backward()
    assert torch.isfinite(emb.grad).all()
    assert all(torch.isfinite(p.grad).all() for p in head.parameters() if p.grad is not None)
    if name != "softmax":
        c = head.cosine(emb).detach()
        assert c.max() <= 1 - 1e-7 + 1e-12 and c.min() >= -1 + 1e-7 - 1e-12


@pytest.mark.parametrize("name", list(HEADS))
def test_fp32_under_autocast(name: str) -> None:
    torch.manual_seed(0)
    head = build_head(name, E, K).eval()
    emb = torch.randn(B, E)
    y = torch.as_tensor(LABELS)
    ref = head.loss_per_sample(emb, y)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        got = head.loss_per_sample(emb.bfloat16(), y)
    assert got.dtype == torch.float32
    assert torch.allclose(got, ref, rtol=0.05, atol=0.05)
    if name != "softmax":
        assert head.cosine(emb.bfloat16()).dtype == torch.float32


def test_build_head_errors_and_bad_input() -> None:
    with pytest.raises(ValueError, match="head 'arcface'.*softmax, am, cosface, aam, ocsoftmax, adaface"):
        build_head("arcface", E, K)
    with pytest.raises(ValueError, match="parameter.*margn.*valid: scale, margin, fallback, easy_margin"):
        build_head("aam", E, K, margn=0.2)
    with pytest.raises(ValueError, match=r"valid: \(none\)"):
        build_head("softmax", E, K, scale=3)
    with pytest.raises(ValueError, match="fallback"):
        build_head("aam", E, K, fallback="arc")
    with pytest.raises(ValueError, match="negatives"):
        build_head("ocsoftmax", E, K, negatives="all")
    with pytest.raises(ValueError, match="margin"):
        AAMHead(E, K, margin=4.0)
    head = make("am")
    emb, y = batch()
    with pytest.raises(ValueError, match=r"outside \[0, 4\)"):
        head.loss_per_sample(emb, torch.tensor([0, 1, 2, 3, 4]))
    with pytest.raises(ValueError, match="do not match batch"):
        head.loss_per_sample(emb, y[:4])
    with pytest.raises(ValueError, match=r"\(B, 8\)"):
        head.loss_per_sample(emb[:, :6], y)
    with pytest.raises(ValueError, match="lam"):
        head.mixed_loss_per_sample(emb, y, y, torch.ones(4))
    assert isinstance(build_head("adaface", E, K, t_alpha=1.0), AdaFaceHead)
