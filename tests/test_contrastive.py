"""NT-Xent(-AM / -AAM) of sslsv.embed.contrastive against the literal formula written out with loops."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from sslsv.embed.contrastive import NTXentHead, nt_xent


def literal(z: np.ndarray, tau: float, m: float, kind: str, symmetric: bool) -> float:
    """Mean over (anchor, positive) pairs of −log e^{s f(c_ap)} / (e^{s f(c_ap)} + Σ_n e^{s c_an})."""
    b, v, _ = z.shape
    e = z / np.linalg.norm(z, axis=2, keepdims=True)
    s = 1.0 / tau

    def f(c: float) -> float:
        if kind == "am":
            return c - m
        theta = math.acos(c)
        if theta + m <= math.pi:
            return math.cos(theta + m)
        return c - (1.0 + math.cos(math.pi - m))        # the wespeaker fallback

    anchor_views = range(v) if symmetric else [0]
    cand_views = range(v) if symmetric else range(1, v)
    losses = []
    for i in range(b):
        for a in anchor_views:
            negs = [s * float(e[i, a] @ e[j, c]) for j in range(b) if j != i for c in cand_views]
            for p in cand_views:
                if p == a:
                    continue
                lp = s * f(float(e[i, a] @ e[i, p]))
                losses.append(-lp + math.log(math.exp(lp) + sum(math.exp(n) for n in negs)))
    return float(np.mean(losses))


@pytest.mark.parametrize("kind", ["am", "aam"])
@pytest.mark.parametrize("symmetric", [True, False])
@pytest.mark.parametrize("v", [2, 3])
def test_matches_literal_formula(kind, symmetric, v):
    rng = np.random.default_rng(3)
    z = rng.standard_normal((5, v, 8))
    for tau, m in [(0.5, 0.0), (0.5, 0.2), (0.1, 0.35)]:
        got = nt_xent(torch.from_numpy(z), temperature=tau, margin=m, margin_type=kind, symmetric=symmetric)
        assert got.dtype == torch.float64
        np.testing.assert_allclose(float(got), literal(z, tau, m, kind, symmetric), rtol=1e-10)


def test_aam_fallback_region_and_margin_only_on_positives():
    # the positive pair at an angle where θ + m > π exercises the fallback; negatives are unchanged by m
    z = np.zeros((3, 2, 2))
    z[0, 0], z[0, 1] = [1, 0], [math.cos(3.0), math.sin(3.0)]      # θ = 3.0 rad, m = 0.3: fallback
    z[1, 0], z[1, 1] = [0, 1], [0.6, 0.8]
    z[2, 0], z[2, 1] = [-1, 0.2], [0.3, -1]
    for sym in (True, False):
        np.testing.assert_allclose(float(nt_xent(torch.from_numpy(z), 0.5, 0.3, "aam", sym)),
                                   literal(z, 0.5, 0.3, "aam", sym), rtol=1e-10)
    # a margin makes the loss larger by exactly what moving the positives' cosines would
    t = torch.from_numpy(np.random.default_rng(0).standard_normal((4, 2, 6)))
    assert float(nt_xent(t, 0.2, 0.1, "am")) > float(nt_xent(t, 0.2, 0.0, "am"))


def test_negative_counts_closed_form():
    # every embedding equal: every cosine is 1 and the loss is log(1 + number of negatives):
    # (V − 1)·(B − 1) in the asymmetric form, V·(B − 1) in the symmetric one (every view of the other
    # utterances); a margin m on the positive makes it log(1 + n·e^{s m})
    for b, v in [(4, 2), (5, 3)]:
        z = torch.ones(b, v, 3, dtype=torch.float64)
        loss = {sym: float(nt_xent(z, 0.5, 0.0, symmetric=sym)) for sym in (False, True)}
        assert loss[False] == pytest.approx(math.log(1 + (v - 1) * (b - 1)), rel=1e-6)
        assert loss[True] == pytest.approx(math.log(1 + v * (b - 1)), rel=1e-6)
        assert float(nt_xent(z, 0.5, 0.2, symmetric=True)) == pytest.approx(
            math.log(1 + v * (b - 1) * math.exp(0.2 / 0.5)), rel=1e-6)


def test_gradients_and_head():
    z = torch.randn(6, 2, 16, dtype=torch.float32, requires_grad=True)
    loss = nt_xent(z, temperature=0.03, margin=0.1, margin_type="aam")
    loss.backward()
    assert loss.dtype == torch.float32 and torch.isfinite(z.grad).all() and z.grad.abs().sum() > 0
    # identical views of orthogonal utterances: loss near 0 at a small temperature, without a margin
    e = torch.eye(4).unsqueeze(1).repeat(1, 2, 1)
    assert float(nt_xent(e, 0.05)) < 1e-6
    # the head: embeddings of B utterances x V views flattened utterance-major; per-utterance losses whose
    # mean is the scalar loss; no projector by default
    torch.manual_seed(0)
    for sym, v in [(True, 2), (False, 3)]:
        head = NTXentHead(16, temperature=0.1, margin=0.2, symmetric=sym, views=v)
        emb = torch.randn(5 * v, 16, dtype=torch.float64)
        per = head.loss_per_sample(emb)
        assert per.shape == (5,)
        ref = nt_xent(emb.reshape(5, v, 16), 0.1, 0.2, symmetric=sym)
        torch.testing.assert_close(per.mean(), ref)
    # top-1 contrastive accuracy: views equal to their utterance's direction are all found
    head = NTXentHead(4)
    assert head.num_correct(torch.eye(4).repeat_interleave(2, dim=0)) == 4
    proj = NTXentHead(16, projector="32-8")
    assert proj.loss_per_sample(torch.randn(8, 16)).shape == (4,) and len(proj.projector) == 4
    with pytest.raises(ValueError, match="mixup"):
        proj.mixed_loss_per_sample(torch.randn(8, 16), None, None, None)
    with pytest.raises(ValueError, match="expected"):
        proj.loss_per_sample(torch.randn(7, 16))


def test_per_utterance_losses_match_the_literal_formula():
    rng = np.random.default_rng(7)
    z = rng.standard_normal((4, 2, 6))
    per = nt_xent(torch.from_numpy(z), 0.3, 0.1, "am", True, reduction="none").numpy()
    # utterance i's loss: the literal formula's pairs whose anchor is a view of i, averaged
    e = z / np.linalg.norm(z, axis=2, keepdims=True)
    for i in range(4):
        pairs = []
        for a in range(2):
            p = 1 - a
            negs = [e[i, a] @ e[j, c] / 0.3 for j in range(4) if j != i for c in range(2)]
            lp = (e[i, a] @ e[i, p] - 0.1) / 0.3
            pairs.append(-lp + math.log(math.exp(lp) + sum(math.exp(n) for n in negs)))
        assert per[i] == pytest.approx(np.mean(pairs), rel=1e-10)


@pytest.mark.parametrize("kwargs, msg", [({"temperature": 0}, "temperature"),
                                         ({"margin_type": "cos"}, "margin_type"),
                                         ({"margin": -0.1}, "margin"),
                                         ({"fallback": "x"}, "fallback")])
def test_bad_settings(kwargs, msg):
    with pytest.raises(ValueError, match=msg):
        nt_xent(torch.randn(4, 2, 3), **kwargs)
    with pytest.raises(ValueError, match="expected views"):
        nt_xent(torch.randn(4, 3))
