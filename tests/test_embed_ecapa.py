"""ECAPA-TDNN (docs/network.md §1): shapes for any T, the §1.4 parameter counts exactly, the whole forward
against an independent numpy float64 re-implementation of the spec's pseudo-code (both residual variants,
with and without global context), batch independence and determinism in eval mode, the pooling's variance
floor, and the four mixing points (exact identity for π = id / λ = 1, location checked with hooks)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from sslsv.embed.ecapa import PRESETS, EcapaTdnn, build_model, count_parameters
from sslsv.embed.mixup import MixSpec, mix

XS = dict(PRESETS["ecapa_xs"], feat_dim=40)


def xs_model(seed: int = 0, **kw) -> EcapaTdnn:
    torch.manual_seed(seed)
    return EcapaTdnn(**{**XS, **kw})


@pytest.mark.parametrize("frames", [100, 200, 537])
def test_shapes_for_any_length(frames: int) -> None:
    model = xs_model().train()
    out = model(torch.randn(3, frames, 40))
    assert out.shape == (3, 192) and torch.isfinite(out).all()
    assert model.eval()(torch.randn(3, frames, 40)).shape == (3, 192)


def test_single_and_two_frame_inputs_are_finite() -> None:
    model = xs_model().eval()
    for frames in (1, 2):
        assert torch.isfinite(model(torch.randn(2, frames, 40))).all()


# (F, C, D, A, S, global context) -> learnable parameters, docs/network.md §1.4 table
COUNTS = [
    (80, 1024, 1536, 128, 128, True, 14_657_088),
    (80, 512, 1536, 128, 128, True, 6_190_720),
    (80, 512, 1536, 128, 128, False, 5_797_504),
    (40, 1024, 1536, 128, 128, True, 14_452_288),
    (40, 512, 1536, 128, 128, True, 6_088_320),
    (40, 256, 768, 64, 64, True, 1_701_792),
    (80, 256, 768, 64, 64, True, 1_752_992),
    (40, 128, 384, 64, 32, True, 564_560),
    (80, 128, 384, 64, 32, True, 590_160),
]


@pytest.mark.parametrize("feat, channels, mfa, att, se, glob, expected", COUNTS)
def test_parameter_counts_match_table(feat, channels, mfa, att, se, glob, expected) -> None:
    explicit = EcapaTdnn(feat_dim=feat, channels=channels, mfa_dim=mfa, att_dim=att, se_dim=se,
                         global_context=glob)
    assert count_parameters(explicit) == expected
    # the defaults (None) reproduce D, A and S; only ecapa_xs sets S = 32 explicitly
    implicit = EcapaTdnn(feat_dim=feat, channels=channels, global_context=glob,
                         se_dim=32 if channels == 128 else None)
    assert count_parameters(implicit) == expected
    assert implicit.pool.linear1.in_channels == (3 if glob else 1) * mfa     # attention input: 3D channels


def test_emb_bn_adds_384_and_buffers_are_not_counted() -> None:
    base = xs_model()
    with_bn = xs_model(emb_bn=True)
    assert count_parameters(with_bn) - count_parameters(base) == 384
    n_buffers = sum(b.numel() for name, b in base.named_buffers() if "running" in name)
    assert n_buffers > 0 and count_parameters(base) == 564_560
    base.linear.weight.requires_grad_(False)
    assert count_parameters(base) == 564_560 - 768 * 192


def test_wespeaker_key_names() -> None:
    keys = set(xs_model(emb_bn=True).state_dict())
    for k in ["layer1.conv.weight", "layer1.bn.running_mean", "layer2.se_res2block.0.conv.weight",
              "layer3.se_res2block.1.convs.6.weight", "layer4.se_res2block.1.bns.6.bias",
              "layer4.se_res2block.2.bn.weight", "layer2.se_res2block.3.linear1.weight",
              "layer2.se_res2block.3.linear2.bias", "conv.weight", "pool.linear1.weight",
              "pool.linear2.bias", "bn.weight", "linear.weight", "bn2.running_var"]:
        assert k in keys, k
    assert not any(".convs.7." in k for k in keys)


def test_config_errors() -> None:
    with pytest.raises(ValueError, match="multiple of the Res2 scale"):
        EcapaTdnn(channels=100)
    with pytest.raises(ValueError, match="unknown key.*chanels"):
        build_model({"chanels": 128})
    with pytest.raises(ValueError, match="unknown preset"):
        build_model({"preset": "ecapa_xxl"})
    with pytest.raises(ValueError, match=r"\(B, T, 40\)"):
        xs_model()(torch.randn(2, 50, 80))
    m = build_model({"preset": "ecapa_xs", "feat_dim": 80, "embed_dim": 128})
    assert count_parameters(m) == 590_160 - 768 * 64 - 64 and m.config["se_dim"] == 32
    assert build_model({"channels": 256}).config == dict(
        feat_dim=40, channels=256, mfa_dim=768, att_dim=64, se_dim=64, embed_dim=192, global_context=True,
        emb_bn=False, dense_input_sum=False)


# ---- numpy float64 reference of the spec (docs/network.md §1.2) -----------------------------------------

def np_conv(x: np.ndarray, w: np.ndarray, b: np.ndarray, dil: int = 1) -> np.ndarray:
    """Zero-padded 'same' Conv1d of one sample x (Cin, T) by w (Cout, Cin, k): a sum over the k taps."""
    k, t = w.shape[2], x.shape[1]
    pad = dil * (k - 1) // 2
    xp = np.pad(x, ((0, 0), (pad, pad)))
    return sum(w[:, :, j] @ xp[:, j * dil: j * dil + t] for j in range(k)) + b[:, None]


def np_bn(x: np.ndarray, p: dict, key: str) -> np.ndarray:
    shape = (-1, 1) if x.ndim == 2 else (-1,)
    mu, var = p[key + ".running_mean"].reshape(shape), p[key + ".running_var"].reshape(shape)
    gamma, beta = p[key + ".weight"].reshape(shape), p[key + ".bias"].reshape(shape)
    return (x - mu) / np.sqrt(var + 1e-5) * gamma + beta


def np_crb(x: np.ndarray, p: dict, key: str, dil: int = 1) -> np.ndarray:
    conv = np_conv(x, p[key + ".conv.weight"], p[key + ".conv.bias"], dil)
    return np_bn(np.maximum(conv, 0), p, key + ".bn")


def np_block(x: np.ndarray, p: dict, key: str, dil: int) -> np.ndarray:
    u = np_crb(x, p, key + ".0")
    g = np.split(u, 8, axis=0)
    hs, h = [], None
    for i in range(7):                                   # WeSpeaker order: h1 = f1(g1), hi = fi(gi + h(i-1))
        inp = g[i] if h is None else g[i] + h
        c = np_conv(inp, p[f"{key}.1.convs.{i}.weight"], p[f"{key}.1.convs.{i}.bias"], dil)
        h = np_bn(np.maximum(c, 0), p, f"{key}.1.bns.{i}")
        hs.append(h)
    u = np_crb(np.concatenate(hs + [g[7]]), p, key + ".2")
    z = u.mean(axis=1)
    a = np.maximum(p[key + ".3.linear1.weight"] @ z + p[key + ".3.linear1.bias"], 0)
    gate = 1 / (1 + np.exp(-(p[key + ".3.linear2.weight"] @ a + p[key + ".3.linear2.bias"])))
    return x + u * gate[:, None]


def np_pool(m: np.ndarray, p: dict, glob: bool) -> np.ndarray:
    t = m.shape[1]
    if glob:
        mu_g = np.repeat(m.mean(axis=1, keepdims=True), t, axis=1)
        sd_g = np.repeat(np.sqrt(m.var(axis=1, ddof=1, keepdims=True) + 1e-7), t, axis=1)
        a_in = np.concatenate([m, mu_g, sd_g])
    else:
        a_in = m
    e = np_conv(np.tanh(np_conv(a_in, p["pool.linear1.weight"], p["pool.linear1.bias"])),
                p["pool.linear2.weight"], p["pool.linear2.bias"])
    alpha = np.exp(e - e.max(axis=1, keepdims=True))
    alpha /= alpha.sum(axis=1, keepdims=True)
    mu = (alpha * m).sum(axis=1)
    sd = np.sqrt(np.maximum((alpha * (m - mu[:, None]) ** 2).sum(axis=1), 1e-7))
    return np.concatenate([mu, sd])


def np_ecapa(x: np.ndarray, p: dict, glob: bool, dense: bool, emb_bn: bool) -> np.ndarray:
    out = []
    for xb in x:                                          # eval mode: samples are independent
        o1 = np_crb(xb.T, p, "layer1")
        o2 = np_block(o1, p, "layer2.se_res2block", 2)
        o3 = np_block(o1 + o2 if dense else o2, p, "layer3.se_res2block", 3)
        o4 = np_block(o1 + o2 + o3 if dense else o3, p, "layer4.se_res2block", 4)
        m = np.maximum(np_conv(np.concatenate([o2, o3, o4]), p["conv.weight"], p["conv.bias"]), 0)
        e = p["linear.weight"] @ np_bn(np_pool(m, p, glob), p, "bn") + p["linear.bias"]
        out.append(np_bn(e, p, "bn2") if emb_bn else e)
    return np.stack(out)


def randomise_bn(model: torch.nn.Module, seed: int) -> None:
    """Non-trivial running statistics and affine parameters, so eval-mode BN is not near the identity."""
    g = torch.Generator().manual_seed(seed)
    for mod in model.modules():
        if isinstance(mod, torch.nn.BatchNorm1d):
            n = mod.num_features
            mod.running_mean.copy_(0.3 * torch.randn(n, generator=g))
            mod.running_var.copy_(0.5 + torch.rand(n, generator=g))
            mod.weight.data.copy_(0.8 + 0.4 * torch.rand(n, generator=g))
            mod.bias.data.copy_(0.2 * torch.randn(n, generator=g))


@pytest.mark.parametrize("glob, dense, emb_bn",
                         [(True, False, False), (False, True, True), (True, True, False)])
def test_forward_matches_numpy_reference(glob: bool, dense: bool, emb_bn: bool) -> None:
    torch.manual_seed(3)
    model = EcapaTdnn(feat_dim=5, channels=16, mfa_dim=24, att_dim=8, se_dim=4, embed_dim=6,
                      global_context=glob, emb_bn=emb_bn, dense_input_sum=dense).double()
    randomise_bn(model, 4)
    model.eval()
    x = torch.randn(3, 23, 5, dtype=torch.float64)
    p = {k: v.numpy() for k, v in model.state_dict().items()}
    ref = np_ecapa(x.numpy(), p, glob, dense, emb_bn)
    with torch.no_grad():
        got = model(x).numpy()
    assert np.abs(ref).max() > 0.1
    np.testing.assert_allclose(got, ref, rtol=1e-10, atol=1e-10)


def test_eval_mode_batch_independence() -> None:
    model = xs_model(1).eval()
    randomise_bn(model, 2)
    x = torch.randn(4, 150, 40)
    with torch.no_grad():
        full = model(x)
        alone = torch.cat([model(x[i:i + 1]) for i in range(4)])
        perm = torch.tensor([2, 0, 3, 1])
        permuted = model(x[perm])
    assert torch.allclose(full, alone, atol=1e-5, rtol=1e-5)
    assert torch.allclose(full[perm], permuted, atol=1e-5, rtol=1e-5)
    # in training mode BN uses the batch, so the same sample's embedding depends on its batch mates
    model.train()
    with torch.no_grad():
        assert not torch.allclose(model(x)[:2], model(x[:2]), atol=1e-3)


def test_determinism() -> None:
    a, b = xs_model(5), xs_model(5)
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)
    a.eval()
    torch.manual_seed(0)
    x = torch.randn(3, 200, 40)
    with torch.no_grad():
        assert torch.equal(a(x), a(x))
        assert torch.equal(a(x), b.eval()(x))


def test_pooling_of_constant_frames() -> None:
    model = xs_model()
    m = torch.full((2, 384, 50), 0.7, requires_grad=True)
    stats = model.pool(m)
    assert stats.shape == (2, 768)
    assert torch.allclose(stats[:, :384], torch.full((2, 384), 0.7), atol=1e-6)
    sd = stats[:, 384:]
    assert torch.isfinite(sd).all() and (sd >= 0).all()
    assert torch.allclose(sd, torch.full_like(sd, 1e-7 ** 0.5), rtol=1e-3)
    stats.square().sum().backward()
    assert torch.isfinite(m.grad).all() and all(torch.isfinite(p.grad).all() for p in model.pool.parameters())
    # the whole network on constant frames (training mode): finite output and gradients
    model.zero_grad()
    out = model(torch.full((3, 80, 40), -1.5))
    assert torch.isfinite(out).all()
    out.square().sum().backward()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters())


def test_pooling_matches_weighted_statistics() -> None:
    """Attentive mean / std against a slow per-channel loop over the softmax weights."""
    torch.manual_seed(0)
    model = EcapaTdnn(feat_dim=4, channels=8, mfa_dim=6, att_dim=5, se_dim=2).double()
    m = torch.randn(2, 6, 9, dtype=torch.float64)
    got = model.pool(m).detach()
    w1, b1 = model.pool.linear1.weight[:, :, 0].detach(), model.pool.linear1.bias.detach()
    w2, b2 = model.pool.linear2.weight[:, :, 0].detach(), model.pool.linear2.bias.detach()
    for b in range(2):
        mb = m[b]
        ctx = torch.cat([mb, mb.mean(1, keepdim=True).expand(6, 9), mb.std(1, keepdim=True).expand(6, 9)])
        energies = w2 @ torch.tanh(w1 @ ctx + b1[:, None]) + b2[:, None]
        for d in range(6):
            wts = [math.exp(float(energies[d, t])) for t in range(9)]
            tot = sum(wts)
            mu = sum(wts[t] / tot * float(mb[d, t]) for t in range(9))
            var = sum(wts[t] / tot * (float(mb[d, t]) - mu) ** 2 for t in range(9))
            assert got[b, d].item() == pytest.approx(mu, abs=1e-9)
            assert got[b, 6 + d].item() == pytest.approx(var ** 0.5, abs=1e-6)


LAYERS = ["input", "stem", "mfa", "pooled"]


@pytest.mark.parametrize("layer", LAYERS)
def test_mix_with_identity_perm_or_unit_lambda_is_the_plain_forward(layer: str) -> None:
    model = xs_model(2).train()
    x = torch.randn(4, 120, 40)
    with torch.no_grad():
        plain = model(x)
        ident = model(x, mix=MixSpec(layer, torch.arange(4), torch.tensor([0.5, 0.6, 0.8, 0.99])))
        unit = model(x, mix=MixSpec(layer, torch.tensor([3, 2, 1, 0]), torch.ones(4)))
        mixed = model(x, mix=MixSpec(layer, torch.tensor([3, 2, 1, 0]), torch.full((4,), 0.6)))
    assert torch.equal(plain, ident) and torch.equal(plain, unit)
    assert not torch.allclose(plain, mixed, atol=1e-3)


# the module whose input is the mixed tensor, and the module whose output is the unmixed tensor
HOOKS = {"input": ("layer1", None), "stem": ("layer2", "layer1"), "mfa": ("pool", None),
         "pooled": ("bn", "pool")}


@pytest.mark.parametrize("layer", LAYERS)
def test_mix_happens_at_the_named_layer(layer: str) -> None:
    model = xs_model(3).eval()
    randomise_bn(model, 1)
    x = torch.randn(4, 90, 40)
    spec = MixSpec(layer, torch.tensor([2, 3, 1, 0]), torch.tensor([0.9, 0.5, 0.7, 0.55]))
    seen: dict[str, torch.Tensor] = {}
    consumer, producer = HOOKS[layer]
    handles = [getattr(model, consumer).register_forward_pre_hook(
        lambda mod, args: seen.__setitem__("in", args[0].clone()))]
    if producer:
        handles.append(getattr(model, producer).register_forward_hook(
            lambda mod, args, out: seen.__setitem__("out", out.clone())))
    with torch.no_grad():
        model(x)
        clean = seen["out"] if producer else seen["in"]
        model(x, mix=spec)
    for h in handles:
        h.remove()
    if layer == "input":
        clean, seen["in"] = clean.transpose(1, 2), seen["in"].transpose(1, 2)
    # the unmixed tensor at that point (for "mfa", ReLU(MFA conv)) mixed by hand
    assert torch.allclose(seen["in"], mix(clean, spec), atol=1e-6)
    assert not torch.allclose(seen["in"], clean, atol=1e-3)


def test_pooled_mix_is_a_convex_combination_of_embeddings_in_eval_mode() -> None:
    """After the pooled statistics the net is affine in eval mode (BN with running stats, Linear), so mixing
    the statistics mixes the embeddings with the same weights."""
    model = xs_model(4).eval()
    randomise_bn(model, 5)
    x = torch.randn(5, 100, 40)
    spec = MixSpec("pooled", torch.tensor([4, 0, 1, 2, 3]), torch.tensor([0.5, 0.9, 0.6, 0.75, 0.51]))
    with torch.no_grad():
        plain = model(x)
        mixed = model(x, mix=spec)
    assert torch.allclose(mixed, mix(plain, spec), atol=1e-4)
    assert not torch.allclose(model(x, mix=MixSpec("mfa", spec.perm, spec.lam)).detach(), mixed, atol=1e-3)


def test_mix_batch_mismatch_is_an_error() -> None:
    with pytest.raises(ValueError, match="batch"):
        xs_model()(torch.randn(3, 50, 40), mix=MixSpec("stem", torch.arange(4), torch.ones(4)))
