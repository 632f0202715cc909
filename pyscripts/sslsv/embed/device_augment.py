"""Corruption and dither of a batch of training chunks on the training device (``augmentation.compute:
device``, docs/network.md §5.9).

The DataLoader workers then only read (a window of each utterance, :mod:`.voiced`), speed-perturb, cut
the chunk and draw the item's *plan*: the corruption type and every scalar of it, from the item's
generator ``np.random.default_rng([seed, epoch, index(, view)])`` in the order and with the ranges of the
worker path (:func:`sslsv.embed.data.corrupt`). Babble is mixed in the worker too (it needs other
utterances' audio, and its cost is their reads). What costs arithmetic moves to the device, batched:

* **reverberation**: the synthetic RIR of :func:`sslsv.augment.synth_rir` (a unit direct path, then
  Gaussian noise whose energy decays 60 dB in RT60, scaled to the drawn direct-to-reverberant ratio and
  kept ≤ 0.9) convolved by FFT, output aligned on the direct path and normalised as
  :func:`sslsv.augment.reverberate` does. With the output shifted to the direct path the pre-delay has no
  effect, so it is not drawn;
* **additive noise**: white / pink / brown Gaussian noise shaped in the frequency domain, optionally
  band-limited and amplitude-modulated (:func:`sslsv.augment.make_noise`), scaled to the drawn SNR over
  the chunk (:func:`sslsv.augment.add_noise`);
* **dither**: Gaussian, of standard deviation ``features.dither``;
* **no clipping**: a chunk whose peak would exceed 32767 is scaled down as a whole (as
  :func:`sslsv.augment.limit_peak`).

The Gaussian samples come from a counter-based generator (:func:`counter_normal`: splitmix64 of the
item's 62-bit key, drawn last from its generator, and the sample's position), so an item's corruption is
a function of ``(seed, epoch, index)`` on any device and in any batch, without a generator per item.
The distributions are the worker path's; the samples are not the same numbers (that path draws from
numpy's generator), so the two modes give equally distributed, not identical, training data.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np
import torch

from .. import augment

if TYPE_CHECKING:
    from .data import AugConfig

# the plan of one item: float64 fields (index → meaning)
TYPE, SNR, RT60, DRR, BETA, BAND_LO, BAND_HI, MOD_FREQ, MOD_DEPTH, MOD_PHASE = range(10)
PLAN_SIZE = 10
NONE, REVERB, NOISE, BABBLE, REVERB_NOISE = range(5)     # TYPE codes: 1 + index in data.CORRUPTIONS

_GOLDEN = 0x9E3779B97F4A7C15
_M1, _M2 = 0xBF58476D1CE4E5B9, 0x94D049BB133111EB
STREAM_RIR, STREAM_NOISE, STREAM_DITHER = 1, 2, 3


def _i64(c: int) -> int:
    """An unsigned 64-bit constant as the int64 with the same bits."""
    return c - (1 << 64) if c >= 1 << 63 else c


def _lsr(z: torch.Tensor, k: int) -> torch.Tensor:
    """Logical right shift of int64 bits (torch's ``>>`` is arithmetic)."""
    return (z >> k) & ((1 << (64 - k)) - 1)


def splitmix64(z: torch.Tensor) -> torch.Tensor:
    """The splitmix64 finaliser on int64 tensors (two's-complement wrap-around, as uint64)."""
    z = (z ^ _lsr(z, 30)) * _i64(_M1)
    z = (z ^ _lsr(z, 27)) * _i64(_M2)
    return z ^ _lsr(z, 31)


def counter_normal(keys: torch.Tensor, n: int, stream: int, dtype: torch.dtype = torch.float32
                   ) -> torch.Tensor:
    """``(B, n)`` standard normal samples: samples ``2j`` and ``2j+1`` of row ``b`` are a function of
    ``(keys[b], stream, j)`` only: ``z`` = splitmix64 of ``key + (stream·2³² + j + 1)·φ``, two 24-bit
    uniforms ``u1``, ``u2`` from its bits, and Box-Muller's pair ``r·cos θ``, ``r·sin θ``
    (``r = sqrt(−2 ln u1)``, ``θ = 2π u2``). On the device of ``keys``, computed in ``dtype``."""
    m = (n + 1) // 2
    ctr = torch.arange(m, device=keys.device, dtype=torch.int64) + ((stream << 32) + 1)
    z = splitmix64(keys[:, None] + ctr[None, :] * _i64(_GOLDEN))
    scale = 1.0 / (1 << 24)
    u1 = (_lsr(z, 40).to(dtype) + 0.5) * scale
    theta = ((z >> 16) & 0xFFFFFF).to(dtype) * (2.0 * math.pi * scale)
    r = torch.sqrt(-2.0 * torch.log(u1))
    pair = torch.stack((r * torch.cos(theta), r * torch.sin(theta)), dim=-1)
    return pair.reshape(keys.shape[0], 2 * m)[:, :n]


def draw_plan(rng: np.random.Generator, cfg: AugConfig, rate: int) -> np.ndarray:
    """The item's corruption plan (``PLAN_SIZE`` float64), drawn as the worker path draws: with
    probability ``aug_prob`` a type by the config's odds, then its RT60 and direct-to-reverberant ratio,
    its SNR and noise shape (:func:`sslsv.augment.noise_params`) or its babble SNR. A babble plan's
    sources are drawn by the caller next (:meth:`ChunkDataset._others`)."""
    p = np.zeros(PLAN_SIZE)
    p[BAND_HI] = rate / 2
    if cfg.aug_prob <= 0 or rng.random() >= cfg.aug_prob:
        return p
    kind = int(rng.choice(4, p=cfg.weights))
    p[TYPE] = 1 + kind
    if p[TYPE] in (REVERB, REVERB_NOISE):
        p[RT60] = rng.uniform(*cfg.rt60)
        p[DRR] = rng.uniform(*augment.DRR_DB)
    if p[TYPE] in (NOISE, REVERB_NOISE):
        p[SNR] = rng.uniform(*cfg.snr_noise)
        kind_name, band, mod = augment.noise_params(rng, rate)
        p[BETA] = augment.NOISE_BETA[kind_name]
        if band is not None:
            p[BAND_LO], p[BAND_HI] = band
        if mod is not None:
            p[MOD_FREQ], p[MOD_DEPTH] = mod
            p[MOD_PHASE] = rng.uniform(0, 2 * np.pi)
    elif p[TYPE] == BABBLE:
        p[SNR] = rng.uniform(*cfg.snr_babble)
    return p


def _power(x: torch.Tensor) -> torch.Tensor:
    return (x * x).mean(dim=-1, keepdim=True)


def limit_peak(y: torch.Tensor, peak: float = augment.INT16_PEAK) -> torch.Tensor:
    """Rows whose peak exceeds ``peak`` scaled down as a whole (:func:`sslsv.augment.limit_peak`)."""
    m = y.abs().amax(dim=-1, keepdim=True)
    return torch.where(m > peak, y * (peak / m.clamp_min(1e-30)), y)


def rir_tails(plan: torch.Tensor, keys: torch.Tensor, rate: int) -> torch.Tensor:
    """``(R, L)`` reverberant tails of the plans' RIRs (float64; zero after each row's own length
    ``max(round(1.25·RT60·rate), 1)``): the samples after the unit direct path."""
    rt60 = plan[:, RT60].to(torch.float64)
    n_tail = torch.clamp(torch.round(1.25 * rt60 * rate), min=1).long()
    length = int(n_tail.max())
    t = torch.arange(1, length + 1, device=plan.device, dtype=torch.float64) / rate
    tail = counter_normal(keys, length, STREAM_RIR, torch.float64) * \
        torch.exp(-3.0 * math.log(10.0) * t[None, :] / rt60[:, None])
    tail = tail * (torch.arange(1, length + 1, device=plan.device)[None, :] <= n_tail[:, None])
    tail = tail * torch.sqrt(10.0 ** (-plan[:, DRR:DRR + 1].to(torch.float64) / 10.0)
                             / (tail * tail).sum(dim=-1, keepdim=True))
    m = tail.abs().amax(dim=-1, keepdim=True)
    return torch.where(m > 0.9, tail * (0.9 / m), tail)


def reverberate(x: torch.Tensor, tails: torch.Tensor, normalize: str = "power") -> torch.Tensor:
    """Rows of ``x`` convolved with RIRs ``[1, tail]`` (direct path first), cut to the input length from
    the direct path: ``y[k] = x[k] + Σ_j tail[j]·x[k−1−j]``; then the level of ``normalize`` (``power``:
    the input's mean square; ``direct`` and ``none``: as convolved, the direct tap being 1) and
    :func:`limit_peak`."""
    n, L = x.shape[-1], tails.shape[-1]
    nfft = 1 << (n + L).bit_length()
    h = torch.nn.functional.pad(tails.to(x.dtype), (1, 0), value=1.0)
    y = torch.fft.irfft(torch.fft.rfft(x, nfft) * torch.fft.rfft(h, nfft), nfft)[:, :n]
    if normalize == "power":
        py = _power(y)
        y = torch.where(py > 0, y * torch.sqrt(_power(x) / py.clamp_min(1e-30)), y)
    elif normalize not in ("direct", "none"):
        raise ValueError(f"normalize must be power, direct or none, got {normalize!r}")
    return limit_peak(y)


def shaped_noise(plan: torch.Tensor, keys: torch.Tensor, n: int, rate: int, dtype: torch.dtype
                 ) -> torch.Tensor:
    """``(R, n)`` unit-RMS noises of the plans' shapes (:func:`sslsv.augment.make_noise`: spectrum
    ``f^(−β/2)``, band, no DC, then modulation)."""
    w = counter_normal(keys, n, STREAM_NOISE, dtype)
    f = torch.fft.rfftfreq(n, 1.0 / rate, device=w.device, dtype=torch.float64)
    fmin = f[1] if f.numel() > 1 else torch.tensor(1.0, dtype=torch.float64)
    beta = plan[:, BETA:BETA + 1].to(torch.float64)
    gain = torch.maximum(f, fmin)[None, :] ** (-beta / 2.0)
    lo, hi = plan[:, BAND_LO:BAND_LO + 1], plan[:, BAND_HI:BAND_HI + 1]
    gain = gain * ((f[None, :] >= lo) & (f[None, :] <= hi))
    gain[:, 0] = 0.0
    w = torch.fft.irfft(torch.fft.rfft(w) * gain.to(w.dtype), n)
    t = torch.arange(n, device=w.device, dtype=torch.float64) / rate
    mod = 1.0 + plan[:, MOD_DEPTH:MOD_DEPTH + 1] * torch.sin(
        2 * math.pi * plan[:, MOD_FREQ:MOD_FREQ + 1] * t[None, :] + plan[:, MOD_PHASE:MOD_PHASE + 1])
    w = w * mod.to(w.dtype)
    return w / torch.sqrt(_power(w)).clamp_min(1e-30)


def add_noise(x: torch.Tensor, noise: torch.Tensor, snr_db: torch.Tensor) -> torch.Tensor:
    """Rows of unit-RMS ``noise`` added to ``x`` at ``snr_db`` (``(R,)``) over each row
    (:func:`sslsv.augment.add_noise`; a silent row stays as it is), then :func:`limit_peak`."""
    scale = torch.sqrt(_power(x) / 10.0 ** (snr_db[:, None].to(x.dtype) / 10.0))
    return limit_peak(x + scale * noise)


def apply(wave: torch.Tensor, plan: torch.Tensor, keys: torch.Tensor, rate: int, reverb_norm: str,
          dither: float) -> torch.Tensor:
    """The corrupted, dithered chunks ``(B, n)`` of a batch: reverberation for the plans of type reverb
    and reverb+noise, then noise for noise and reverb+noise, then dither on every chunk. ``wave``
    (float32, int16 scale) holds the chunks as the workers cut them (babble already mixed in)."""
    x = wave
    typ = plan[:, TYPE].round().long()
    rev = torch.nonzero((typ == REVERB) | (typ == REVERB_NOISE)).flatten()
    if rev.numel():
        x = x.index_copy(0, rev, reverberate(x[rev], rir_tails(plan[rev], keys[rev], rate), reverb_norm))
    noi = torch.nonzero((typ == NOISE) | (typ == REVERB_NOISE)).flatten()
    if noi.numel():
        noise = shaped_noise(plan[noi], keys[noi], x.shape[-1], rate, x.dtype)
        x = x.index_copy(0, noi, add_noise(x[noi], noise, plan[noi, SNR]))
    if dither > 0:
        x = x + dither * counter_normal(keys, x.shape[-1], STREAM_DITHER, x.dtype)
    return x
