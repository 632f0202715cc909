"""i-mix / l-mix helpers (docs/network.md §4): the folded-Beta λ distribution against its closed-form CDF,
reproducibility from the numpy generator alone, the mix against a literal per-sample loop, exact identity
for π = id or λ = 1, and the mixed loss formula."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy import stats
from sslsv.embed.mixup import MixSpec, mix, mixed_loss, sample_mix


def test_lambda_is_folded_uniform_for_alpha_1() -> None:
    spec = sample_mix(20000, 1.0, "input", np.random.default_rng(0), "cpu")
    lam = spec.lam.numpy().astype(np.float64)
    assert spec.lam.dtype == torch.float32 and lam.min() >= 0.5 and lam.max() <= 1.0
    # max(U, 1 − U) with U ~ U(0, 1) is U(0.5, 1): mean 0.75, KS against the uniform
    assert abs(lam.mean() - 0.75) < 0.005
    assert stats.kstest(lam, stats.uniform(loc=0.5, scale=0.5).cdf).pvalue > 0.01


def test_lambda_is_folded_arcsine_for_alpha_half() -> None:
    lam = sample_mix(20000, 0.5, "mfa", np.random.default_rng(1), "cpu").lam.numpy().astype(np.float64)
    # X ~ Beta(.5, .5) has CDF (2/π) asin(√x); Y = max(X, 1 − X) has CDF 2 F(y) − 1 on [0.5, 1]
    cdf = lambda y: 2 * (2 / np.pi) * np.arcsin(np.sqrt(np.clip(y, 0.5, 1))) - 1  # noqa: E731
    assert lam.min() >= 0.5
    assert stats.kstest(lam, cdf).pvalue > 0.01
    assert abs(lam.mean() - (0.5 + 1 / np.pi)) < 0.005       # E[max(X, 1 − X)] = 1/2 + 1/π for arcsine


def test_sample_mix_reproducible_and_independent_of_torch_rng() -> None:
    torch.manual_seed(1)
    a = sample_mix(64, 1.0, "stem", np.random.default_rng(7), "cpu")
    torch.manual_seed(2)
    torch.rand(100)
    b = sample_mix(64, 1.0, "stem", np.random.default_rng(7), "cpu")
    assert torch.equal(a.perm, b.perm) and torch.equal(a.lam, b.lam)
    assert a.perm.dtype == torch.long and sorted(a.perm.tolist()) == list(range(64))
    assert not torch.equal(a.perm, torch.arange(64))
    # λ is drawn first, then π (so a given seed's λ does not depend on the batch permutation)
    rng = np.random.default_rng(7)
    lam = rng.beta(1.0, 1.0, 64)
    assert np.allclose(a.lam.numpy(), np.maximum(lam, 1 - lam), atol=1e-7)
    assert np.array_equal(a.perm.numpy(), rng.permutation(64))
    c = sample_mix(64, 1.0, "stem", np.random.default_rng(8), "cpu")
    assert not torch.equal(a.lam, c.lam)


def test_sample_mix_rejects_bad_arguments() -> None:
    rng = np.random.default_rng(0)
    with pytest.raises(ValueError, match="input, stem, mfa, pooled"):
        sample_mix(4, 1.0, "block2", rng, "cpu")
    with pytest.raises(ValueError, match="alpha"):
        sample_mix(4, 0.0, "input", rng, "cpu")
    with pytest.raises(ValueError, match="batch"):
        sample_mix(0, 1.0, "input", rng, "cpu")


@pytest.mark.parametrize("shape", [(6, 11, 5), (6, 9), (6, 3, 4, 2)])
def test_mix_matches_literal_loop(shape: tuple[int, ...]) -> None:
    x = torch.randn(*shape, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    spec = sample_mix(shape[0], 0.5, "input", np.random.default_rng(3), "cpu")
    got = mix(x, spec)
    ref = torch.empty_like(x)
    for i in range(shape[0]):
        lam = float(spec.lam[i])
        ref[i] = lam * x[i] + (1 - lam) * x[int(spec.perm[i])]
    assert torch.allclose(got, ref, atol=1e-12, rtol=0)
    assert got.dtype == x.dtype


def test_mix_identity_cases_are_exact() -> None:
    x = torch.randn(5, 7, 3)
    ident = MixSpec("input", torch.arange(5), torch.tensor([0.5, 0.6, 0.7, 0.8, 0.93]))
    assert torch.equal(mix(x, ident), x)
    lam_one = MixSpec("input", torch.tensor([4, 3, 2, 1, 0]), torch.ones(5))
    assert torch.equal(mix(x, lam_one), x)
    with pytest.raises(ValueError, match="batch"):
        mix(x[:4], ident)
    with pytest.raises(ValueError, match="shape"):
        MixSpec("input", torch.arange(5), torch.ones(4))


def test_mix_gradient_reaches_both_partners() -> None:
    x = torch.randn(3, 4, requires_grad=True)
    spec = MixSpec("pooled", torch.tensor([1, 2, 0]), torch.tensor([0.75, 0.5, 0.9]))
    mix(x, spec).sum().backward()
    # d/dx_j Σ_i [λ_i x_i + (1 − λ_i) x_π(i)] = λ_j + (1 − λ_{π⁻¹(j)}): x0 gets 0.75 + 0.1, x1 0.5 + 0.25, ...
    assert torch.allclose(x.grad[:, 0], torch.tensor([0.85, 0.75, 1.4]))


def test_mixed_loss_formula() -> None:
    a = torch.tensor([1.0, 2.0, 3.0, 0.5])
    b = torch.tensor([4.0, 0.0, 3.0, 2.5])
    lam = torch.tensor([0.5, 0.75, 0.9, 1.0])
    # (0.5·1 + 0.5·4 + 0.75·2 + 0.25·0 + 3 + 0.5) / 4 = (2.5 + 1.5 + 3 + 0.5) / 4
    assert mixed_loss(a, b, lam).item() == pytest.approx(7.5 / 4, abs=1e-7)
    assert torch.equal(mixed_loss(a, a, lam), a.mean())
    with pytest.raises(ValueError):
        mixed_loss(a, b[:3], lam)
