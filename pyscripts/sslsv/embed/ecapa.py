"""ECAPA-TDNN speaker-embedding network, WeSpeaker ``ECAPA_TDNN_GLOB_*`` topology (docs/network.md §1).

x (B, T, F) → stem Conv1dReluBn(F, C, k=5) → three SE-Res2Blocks (dilation 2, 3, 4) → MFA 1×1 conv of the
concatenated block outputs to D channels + ReLU → attentive statistics pooling with global context →
BatchNorm(2D) → Linear(2D, E) [→ BatchNorm(E) when ``emb_bn``].

Choices (docs/network.md): conv → ReLU → BN order; zero "same" padding d·(k−1)/2, so T is free and
unchanged through the frame-level layers; Res2 in WeSpeaker order (h1 = f1(g1), h_i = f_i(g_i + h_{i−1}),
g8 passed through), so the state_dict keys (layer1..4, conv, pool.linear1/2, bn, linear, bn2) match
WeSpeaker's and its checkpoints load. The pooled standard deviation uses SpeechBrain's stable form
sqrt(clamp(Σ_t α_t (m_t − μ)², 1e-7)) rather than WeSpeaker's Σ α m² − μ² (no cancellation; the 1e-7 floor
keeps the sqrt's gradient finite for constant frames).
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from sslsv.embed.mixup import MixSpec
from sslsv.embed.mixup import mix as mix_batch

RES2_SCALE = 8
VAR_FLOOR = 1e-7

# docs/network.md §1.5 size presets (F is a separate config value).
PRESETS: dict[str, dict[str, Any]] = {
    "ecapa_xs": dict(channels=128, mfa_dim=384, att_dim=64, se_dim=32),
    "ecapa_s": dict(channels=256),
    "ecapa_c512": dict(channels=512),
    "ecapa_c1024": dict(channels=1024),
}


class Conv1dReluBn(nn.Module):
    """Conv1d (bias, zero padding d·(k−1)/2) → ReLU → BatchNorm1d."""

    def __init__(self, in_ch: int, out_ch: int, kernel: int = 1, dilation: int = 1) -> None:
        super().__init__()
        self.conv = nn.Conv1d(in_ch, out_ch, kernel, dilation=dilation, padding=dilation * (kernel - 1) // 2)
        self.bn = nn.BatchNorm1d(out_ch)

    def forward(self, x: Tensor) -> Tensor:
        return self.bn(F.relu(self.conv(x)))


class Res2Conv1dReluBn(nn.Module):
    """Res2 multi-scale conv: 8 groups of C/8 channels, 7 hierarchical k=3 convs, the last group passed on."""

    def __init__(self, channels: int, kernel: int, dilation: int, scale: int = RES2_SCALE) -> None:
        super().__init__()
        self.width = channels // scale
        pad = dilation * (kernel - 1) // 2
        self.convs = nn.ModuleList(nn.Conv1d(self.width, self.width, kernel, dilation=dilation, padding=pad)
                                   for _ in range(scale - 1))
        self.bns = nn.ModuleList(nn.BatchNorm1d(self.width) for _ in range(scale - 1))

    def forward(self, x: Tensor) -> Tensor:
        groups = torch.split(x, self.width, dim=1)
        out = []
        h = None
        for i, (conv, bn) in enumerate(zip(self.convs, self.bns, strict=True)):
            h = groups[i] if h is None else groups[i] + h
            h = bn(F.relu(conv(h)))
            out.append(h)
        out.append(groups[-1])
        return torch.cat(out, dim=1)


class SqueezeExcite(nn.Module):
    """Channel gate: h ⊙ sigmoid(W2 ReLU(W1 mean_t(h))) with a bottleneck of ``se_dim`` units, no BN."""

    def __init__(self, channels: int, se_dim: int) -> None:
        super().__init__()
        self.linear1 = nn.Linear(channels, se_dim)
        self.linear2 = nn.Linear(se_dim, channels)

    def forward(self, x: Tensor) -> Tensor:
        gate = torch.sigmoid(self.linear2(F.relu(self.linear1(x.mean(dim=2)))))
        return x * gate.unsqueeze(2)


class SERes2Block(nn.Module):
    """x + SE(Conv1dReluBn_1x1(Res2(Conv1dReluBn_1x1(x)))): identity shortcut, T unchanged."""

    def __init__(self, channels: int, dilation: int, se_dim: int) -> None:
        super().__init__()
        self.se_res2block = nn.Sequential(
            Conv1dReluBn(channels, channels, 1),
            Res2Conv1dReluBn(channels, 3, dilation),
            Conv1dReluBn(channels, channels, 1),
            SqueezeExcite(channels, se_dim),
        )

    def forward(self, x: Tensor) -> Tensor:
        return x + self.se_res2block(x)


class AttentiveStatsPool(nn.Module):
    """Channel-wise attentive mean and standard deviation over time: (B, D, T) → (B, 2D).

    With ``global_context`` the attention sees [m; mean_t(m); std_t(m)] (3D channels; std from the unbiased
    variance + 1e-7, as WeSpeaker; a single frame uses the biased one instead of NaN). Energies
    V tanh(W a + b) + k (no BN or ReLU before the tanh, as WeSpeaker), softmax over time per channel.
    """

    def __init__(self, in_dim: int, att_dim: int, global_context: bool = True) -> None:
        super().__init__()
        self.global_context = global_context
        self.linear1 = nn.Conv1d(3 * in_dim if global_context else in_dim, att_dim, kernel_size=1)
        self.linear2 = nn.Conv1d(att_dim, in_dim, kernel_size=1)

    def forward(self, m: Tensor) -> Tensor:
        if self.global_context:
            t = m.shape[-1]
            ctx_mean = m.mean(dim=-1, keepdim=True).expand_as(m)
            ctx_var = torch.var(m, dim=-1, keepdim=True, correction=1 if t > 1 else 0)
            ctx_std = torch.sqrt(ctx_var + VAR_FLOOR).expand_as(m)
            att_in = torch.cat([m, ctx_mean, ctx_std], dim=1)
        else:
            att_in = m
        alpha = torch.softmax(self.linear2(torch.tanh(self.linear1(att_in))), dim=-1)
        mean = torch.sum(alpha * m, dim=-1)
        var = torch.sum(alpha * (m - mean.unsqueeze(-1)) ** 2, dim=-1)
        std = torch.sqrt(var.clamp(min=VAR_FLOOR))
        return torch.cat([mean, std], dim=1)


class EcapaTdnn(nn.Module):
    """ECAPA-TDNN embedding extractor: (B, T, F) features → (B, E) embeddings.

    ``mfa_dim`` / ``att_dim`` / ``se_dim`` default to WeSpeaker's 1536 / 128 / 128 when channels ≥ 512 and to
    3·channels / 64 / 64 below (docs/network.md §1.5). ``dense_input_sum`` feeds block i the sum of the stem
    and all earlier block outputs (the paper / Tao variant, an ablation switch).
    """

    def __init__(self, feat_dim: int = 40, channels: int = 512, mfa_dim: int | None = None,
                 att_dim: int | None = None, se_dim: int | None = None, embed_dim: int = 192,
                 global_context: bool = True, emb_bn: bool = False, dense_input_sum: bool = False) -> None:
        super().__init__()
        if channels < RES2_SCALE or channels % RES2_SCALE:
            raise ValueError(f"EcapaTdnn: channels={channels} must be a positive multiple of the Res2 scale "
                             f"{RES2_SCALE}")
        big = channels >= 512
        mfa_dim = mfa_dim if mfa_dim is not None else (1536 if big else 3 * channels)
        att_dim = att_dim if att_dim is not None else (128 if big else 64)
        se_dim = se_dim if se_dim is not None else (128 if big else 64)
        for name, val in (("feat_dim", feat_dim), ("mfa_dim", mfa_dim), ("att_dim", att_dim),
                          ("se_dim", se_dim), ("embed_dim", embed_dim)):
            if int(val) != val or val < 1:
                raise ValueError(f"EcapaTdnn: {name}={val!r} must be a positive integer")
        self.config = dict(feat_dim=feat_dim, channels=channels, mfa_dim=mfa_dim, att_dim=att_dim,
                           se_dim=se_dim, embed_dim=embed_dim, global_context=bool(global_context),
                           emb_bn=bool(emb_bn), dense_input_sum=bool(dense_input_sum))
        self.feat_dim, self.embed_dim = feat_dim, embed_dim
        self.dense_input_sum = bool(dense_input_sum)

        self.layer1 = Conv1dReluBn(feat_dim, channels, kernel=5)
        self.layer2 = SERes2Block(channels, 2, se_dim)
        self.layer3 = SERes2Block(channels, 3, se_dim)
        self.layer4 = SERes2Block(channels, 4, se_dim)
        self.conv = nn.Conv1d(3 * channels, mfa_dim, kernel_size=1)
        self.pool = AttentiveStatsPool(mfa_dim, att_dim, global_context)
        self.bn = nn.BatchNorm1d(2 * mfa_dim)
        self.linear = nn.Linear(2 * mfa_dim, embed_dim)
        self.bn2 = nn.BatchNorm1d(embed_dim) if emb_bn else nn.Identity()

    def forward(self, x: Tensor, mix: MixSpec | None = None) -> Tensor:
        """Embeddings for x (B, T, F); ``mix`` mixes the batch (same π, λ) at ``mix.layer``.

        The mixing points are the only tensors carried forward from their depth, so mixing there mixes the
        whole state: "input" = x, "stem" = o1, "mfa" = the MFA output before pooling, "pooled" = the pooled
        statistics before BN.
        """
        if x.dim() != 3 or x.shape[2] != self.feat_dim:
            raise ValueError(f"EcapaTdnn: expected input (B, T, {self.feat_dim}), got {tuple(x.shape)}")
        layer = mix.layer if mix is not None else None
        if layer == "input":
            x = mix_batch(x, mix)
        o1 = self.layer1(x.transpose(1, 2))
        if layer == "stem":
            o1 = mix_batch(o1, mix)
        o2 = self.layer2(o1)
        if self.dense_input_sum:
            o3 = self.layer3(o1 + o2)
            o4 = self.layer4(o1 + o2 + o3)
        else:
            o3 = self.layer3(o2)
            o4 = self.layer4(o3)
        m = F.relu(self.conv(torch.cat([o2, o3, o4], dim=1)))
        if layer == "mfa":
            m = mix_batch(m, mix)
        p = self.pool(m)
        if layer == "pooled":
            p = mix_batch(p, mix)
        return self.bn2(self.linear(self.bn(p)))


def build_model(cfg: Mapping[str, Any]) -> EcapaTdnn:
    """EcapaTdnn from a config mapping of constructor keywords, optionally starting from ``preset``
    (one of PRESETS; explicit keys override it). Unknown keys raise ValueError naming them."""
    allowed = set(inspect.signature(EcapaTdnn.__init__).parameters) - {"self"}
    unknown = sorted(set(cfg) - allowed - {"preset"})
    if unknown:
        raise ValueError(f"model config: unknown key(s) {', '.join(unknown)}; "
                         f"valid: preset, {', '.join(sorted(allowed))}")
    params: dict[str, Any] = {}
    preset = cfg.get("preset")
    if preset is not None:
        if preset not in PRESETS:
            raise ValueError(f"model config: unknown preset {preset!r}; valid: {', '.join(PRESETS)}")
        params.update(PRESETS[preset])
    params.update({k: v for k, v in cfg.items() if k != "preset"})
    return EcapaTdnn(**params)


def count_parameters(model: nn.Module) -> int:
    """Number of learnable scalars (BN running statistics are buffers and not counted)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
