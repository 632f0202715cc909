"""Kaldi MFCC / log-mel filterbank as a batched torch module, for computing features on the training
device instead of in CPU data workers.

``KaldiFeatures(cfg, kind)`` maps a batch of equal-length waveforms (B, N) to features (B, T, F) by
Kaldi's definitions (``compute-mfcc-feats`` / ``compute-fbank-feats``), vectorised over the batch and
the frames:

* framing: T = Kaldi's ``NumFrames(N)``; with ``--snip-edges=false`` frame t is centred on
  ``t * shift + shift / 2`` and samples beyond the ends are reflected (index -1 -> 0, N -> N - 1);
* per frame: remove the DC offset, (raw log energy), pre-emphasis ``x[i] - c x[i-1]`` with
  ``x[0] - c x[0]`` first, window (povey, hamming, hanning, sine, rectangular, blackman), zero padding
  to the FFT size, power spectrum;
* Kaldi's mel banks (mel = 1127 ln(1 + f / 700), triangles in mel between ``--low-freq`` and
  ``--high-freq`` (<= 0: offset from Nyquist), the Nyquist bin unused), log with a floor of float32
  epsilon; for MFCC the first ``num_ceps`` rows of Kaldi's orthonormal DCT-II, the cepstral lifter
  ``1 + Q/2 sin(pi i / Q)``, c0 replaced by the log energy if ``--use-energy`` (with ``--raw-energy``
  and ``--energy-floor``), and ``--htk-compat``'s reordering; ``--subtract-mean`` per row.

Differences from ``sslsv.features.mfcc.compute_mfcc``, by design: the module adds **no dither** (the
waveforms must already carry it: the data workers add it with the augmentation, so that the noise is
drawn there and the module stays deterministic), does not resample (the input must be at
``--sample-frequency``), and computes in float32 (or float64 if built with ``dtype=torch.float64``)
whatever the input dtype or an enclosing autocast (bf16 keeps 8 mantissa bits). VTLN
(``--vtln-warp`` != 1) is rejected. On CUDA the mel and DCT projections are done in float64, so the
result does not depend on the TF32 setting.

Precision: in float64 the module equals a literal float64 transcription of Kaldi's code to ~1e-9. In
float32 it agrees with kaldi-native-fbank (``compute_mfcc`` with ``--dither=0``) to ~1e-3 absolute on
log-domain values of speech and noise. Both are float32 FFTs, though, and mel bins lying more than
~15 nats below a frame's strongest bin (a pure tone, an undithered sweep) are beyond float32's reach:
there both differ from the float64 values by up to ~0.8 (see tests/test_torch_frontend.py).
"""

from __future__ import annotations

import math

import numpy as np
import torch

from .kaldi_options import WINDOW_TYPES, MfccConfig
from .mfcc import num_frames

KINDS = ("mfcc", "fbank")


def window_function(cfg: MfccConfig) -> np.ndarray:
    """Kaldi's ``FeatureWindowFunction`` (float64, length = frame length in samples)."""
    n = cfg.window_size_samples
    i = np.arange(n, dtype=np.float64)
    a = 2.0 * math.pi / (n - 1)
    kind = cfg.window_type
    if kind == "hanning":
        return 0.5 - 0.5 * np.cos(a * i)
    if kind == "sine":
        return np.sin(0.5 * a * i)
    if kind == "hamming":
        return 0.54 - 0.46 * np.cos(a * i)
    if kind == "povey":
        return (0.5 - 0.5 * np.cos(a * i)) ** 0.85
    if kind == "rectangular":
        return np.ones(n)
    if kind == "blackman":
        c = cfg.blackman_coeff
        return c - 0.5 * np.cos(a * i) + (0.5 - c) * np.cos(2.0 * a * i)
    raise ValueError(f"invalid window type {kind!r} (one of {', '.join(WINDOW_TYPES)})")


def mel_scale(freq: np.ndarray | float) -> np.ndarray:
    """Kaldi's mel scale: 1127 ln(1 + f / 700)."""
    return 1127.0 * np.log1p(np.asarray(freq, dtype=np.float64) / 700.0)


def mel_banks(cfg: MfccConfig) -> np.ndarray:
    """Kaldi's ``MelBanks`` weights as a (padded_window_size // 2 + 1, num_mel_bins) float64 matrix
    acting on the power spectrum; the last row (the Nyquist bin, which Kaldi ignores) is zero."""
    n_fft = cfg.padded_window_size
    nyq = 0.5 * cfg.sample_frequency
    high = cfg.high_freq if cfg.high_freq > 0 else nyq + cfg.high_freq
    lo, hi = float(mel_scale(cfg.low_freq)), float(mel_scale(high))
    delta = (hi - lo) / (cfg.num_mel_bins + 1)
    left = lo + delta * np.arange(cfg.num_mel_bins)
    centre, right = left + delta, left + 2.0 * delta
    mel = mel_scale(np.arange(n_fft // 2) * (cfg.sample_frequency / n_fft))[:, None]
    up = (mel - left) / (centre - left)
    down = (right - mel) / (right - centre)
    w = np.where(mel <= centre, up, down)
    w = np.where((mel > left) & (mel < right), w, 0.0)
    return np.concatenate([w, np.zeros((1, cfg.num_mel_bins))], axis=0)


def dct_matrix(num_ceps: int, num_bins: int) -> np.ndarray:
    """Rows 0..num_ceps-1 of Kaldi's ``ComputeDctMatrix`` (orthonormal DCT-II), (num_ceps, num_bins)."""
    k = np.arange(num_ceps, dtype=np.float64)[:, None]
    n = np.arange(num_bins, dtype=np.float64)[None, :]
    m = math.sqrt(2.0 / num_bins) * np.cos(math.pi / num_bins * (n + 0.5) * k)
    m[0] = math.sqrt(1.0 / num_bins)
    return m


def lifter_coeffs(num_ceps: int, q: float) -> np.ndarray:
    """Kaldi's cepstral lifter 1 + Q/2 sin(pi i / Q) (all ones when Q == 0)."""
    i = np.arange(num_ceps, dtype=np.float64)
    return np.ones(num_ceps) if q == 0 else 1.0 + 0.5 * q * np.sin(math.pi * i / q)


class KaldiFeatures(torch.nn.Module):
    """Kaldi MFCC (``kind="mfcc"``) or log mel filterbank energies (``kind="fbank"``, no energy column)
    of a batch of already dithered, int16-scale waveforms at ``cfg.sample_frequency``.

    ``forward(wave)``: (B, N) -> (B, T, F) with T = ``num_frames(N, cfg)`` and F = ``num_ceps`` (mfcc)
    or ``num_mel_bins`` (fbank), in ``dtype`` (float32 by default; float64 for reference-grade values).
    The constant matrices are non-persistent buffers: ``.to(device)`` moves them, and checkpoints of a
    model holding the module do not store them. A ``.to(half type)`` of the buffers is ignored (float32).
    """

    window: torch.Tensor
    mel: torch.Tensor
    dct: torch.Tensor
    lifter: torch.Tensor

    def __init__(self, cfg: MfccConfig, kind: str = "mfcc", dtype: torch.dtype = torch.float32) -> None:
        super().__init__()
        if dtype not in (torch.float32, torch.float64):
            raise ValueError(f"dtype must be torch.float32 or torch.float64, got {dtype}")
        if kind not in KINDS:
            raise ValueError(f"kind must be one of {', '.join(KINDS)}, got {kind!r}")
        if cfg.vtln_warp != 1.0:
            raise ValueError(f"--vtln-warp={cfg.vtln_warp}: VTLN warping is not supported; use 1.0")
        cfg.check("KaldiFeatures config")
        self.cfg, self.kind = cfg, kind
        self.dim = int(cfg.num_ceps) if kind == "mfcc" else int(cfg.num_mel_bins)
        self.use_energy = kind == "mfcc" and cfg.use_energy
        for name, value in (("window", window_function(cfg)), ("mel", mel_banks(cfg)),
                            ("dct", dct_matrix(cfg.num_ceps, cfg.num_mel_bins).T),
                            ("lifter", lifter_coeffs(cfg.num_ceps, cfg.cepstral_lifter))):
            self.register_buffer(name, torch.tensor(value, dtype=dtype), persistent=False)

    def extra_repr(self) -> str:
        c = self.cfg
        return (f"kind={self.kind}, dim={self.dim}, rate={c.sample_frequency:g}, window={c.window_type}, "
                f"snip_edges={c.snip_edges}")

    def num_frames(self, num_samples: int) -> int:
        """Frames produced from ``num_samples`` samples (Kaldi's ``NumFrames``)."""
        return num_frames(num_samples, self.cfg)

    def frames(self, wave: torch.Tensor) -> torch.Tensor:
        """The (B, T, frame length) frames of ``wave`` (B, N), a strided view when snipping edges."""
        cfg = self.cfg
        n, shift, length = wave.shape[-1], cfg.window_shift_samples, cfg.window_size_samples
        t = num_frames(n, cfg)
        if cfg.snip_edges:
            return wave.unfold(-1, length, shift)[:, :t]
        # Frame t starts at t*shift + shift/2 - length/2; out-of-range samples are reflected about the
        # ends (s < 0 -> -s - 1, s >= N -> 2N - 1 - s, repeated): closed form with period 2N.
        start = torch.arange(t, device=wave.device) * shift + (shift // 2 - length // 2)
        idx = (start[:, None] + torch.arange(length, device=wave.device)).remainder(2 * n)
        idx = torch.where(idx >= n, 2 * n - 1 - idx, idx)
        return wave[:, idx]

    def forward(self, wave: torch.Tensor) -> torch.Tensor:
        """Features (B, T, F) of int16-scale, already dithered waveforms ``wave`` (B, N), in the module's
        dtype (float32 unless built or ``.to()``-converted to float64; half types compute in float32)."""
        if wave.dim() != 2:
            raise ValueError(f"expected a (batch, samples) waveform tensor, got shape {tuple(wave.shape)}")
        cfg = self.cfg
        dt = torch.float64 if self.window.dtype == torch.float64 else torch.float32
        t = num_frames(wave.shape[-1], cfg)
        if t == 0:
            return wave.new_zeros((wave.shape[0], 0, self.dim), dtype=dt)
        with torch.autocast(device_type=wave.device.type, enabled=False):
            eps = float(torch.finfo(torch.float32).eps)     # Kaldi's floor, whatever the dtype
            x = self.frames(wave.to(dt))
            if cfg.remove_dc_offset:
                x = x - x.mean(dim=-1, keepdim=True)
            if self.use_energy and cfg.raw_energy:
                energy = x.square().sum(-1).clamp_min(eps).log()
            c = cfg.preemphasis_coefficient
            if c != 0.0:
                x = torch.cat([x[..., :1] * (1.0 - c), x[..., 1:] - c * x[..., :-1]], dim=-1)
            x = x * self.window.to(dt)
            if self.use_energy and not cfg.raw_energy:
                energy = x.square().sum(-1).clamp_min(eps).log()
            spec = torch.fft.rfft(x, n=cfg.padded_window_size)
            power = spec.real.square() + spec.imag.square()
            # On CUDA the two projections run in float64: TF32 (which the trainer enables) would cost
            # ~1e-2 on the cepstra, and float64 is never TF32; the cost is negligible next to the FFT.
            proj = torch.float64 if x.is_cuda else dt
            feats = (power.to(proj) @ self.mel.to(proj)).clamp_min(eps).log()
            if self.kind == "mfcc":
                feats = (feats @ self.dct.to(proj)) * self.lifter.to(proj)
            feats = feats.to(dt)
            if self.kind == "mfcc":
                if self.use_energy:
                    if cfg.energy_floor > 0.0:
                        energy = energy.clamp_min(math.log(cfg.energy_floor))
                    feats = torch.cat([energy[..., None], feats[..., 1:]], dim=-1)
                if cfg.htk_compat:
                    c0 = feats[..., :1] if self.use_energy else feats[..., :1] * math.sqrt(2.0)
                    feats = torch.cat([feats[..., 1:], c0], dim=-1)
            if cfg.subtract_mean:
                feats = feats - feats.mean(dim=1, keepdim=True)
        return feats
