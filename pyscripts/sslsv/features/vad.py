"""Kaldi's energy VAD (``compute-vad``, ``ComputeVadEnergy``), vectorised with cumulative sums.

Frame t is voiced iff, among the frames ``u`` in ``[t-K, t+K]`` that exist, at least a proportion
``p`` have raw log-energy (column 0 of the MFCC) strictly above ``tau + s * mean(E)``. The threshold
and the proportion test are done in float32, as Kaldi does (BaseFloat).
"""

from __future__ import annotations

import numpy as np

from ..tables import DataError
from .kaldi_options import VadConfig


def compute_vad(feats: np.ndarray, cfg: VadConfig, where: str = "") -> np.ndarray:
    """Voiced flags (float32 0/1, length T) from a T x D feature matrix whose column 0 is log-energy."""
    feats = np.asarray(feats)
    if feats.ndim != 2:
        raise DataError(f"{where + ': ' if where else ''}expected a feature matrix, got shape {feats.shape}")
    t = feats.shape[0]
    if t == 0:
        return np.zeros(0, dtype=np.float32)
    energy = feats[:, 0].astype(np.float32)
    threshold = np.float32(cfg.vad_energy_threshold)
    if cfg.vad_energy_mean_scale != 0.0:
        total = np.float32(energy.sum(dtype=np.float64))   # Kaldi: double accumulator, float result
        threshold = np.float32(threshold + np.float32(np.float32(cfg.vad_energy_mean_scale) * total)
                               / np.float32(t))
    above = (energy > threshold).astype(np.int64)
    k = cfg.vad_frames_context
    if k == 0:
        num = above
        den = np.ones(t, dtype=np.int64)
    else:
        csum = np.concatenate(([0], np.cumsum(above)))
        idx = np.arange(t)
        lo = np.maximum(idx - k, 0)
        hi = np.minimum(idx + k + 1, t)
        num = csum[hi] - csum[lo]
        den = hi - lo
    voiced = num.astype(np.float32) >= den.astype(np.float32) * np.float32(cfg.vad_proportion_threshold)
    return voiced.astype(np.float32)
