"""Kaldi's feature transforms used before UBM and i-vector work, whole-utterance and vectorised:
``add-deltas``, ``apply-cmvn-sliding``, ``select-voiced-frames`` and ``subsample-feats``.
"""

from __future__ import annotations

import numpy as np

from ..tables import DataError


def delta_taps(order: int, window: int) -> list[np.ndarray]:
    """Kaldi's delta filters: entry i has length 1 + 2*i*window (entry 0 is ``[1]``)."""
    if order < 0 or window < 1:
        raise ValueError(f"delta order must be >= 0 and window >= 1, got {order}, {window}")
    taps = [np.ones(1)]
    ramp = np.arange(-window, window + 1, dtype=np.float64)
    norm = float((ramp ** 2).sum())
    for _ in range(order):
        taps.append(np.convolve(taps[-1], ramp) / norm)
    return taps


def add_deltas(feats: np.ndarray, order: int = 2, window: int = 2) -> np.ndarray:
    """``add-deltas --delta-order=order --delta-window=window``: ``[x, Δx, Δ²x, ...]`` with edge frames
    replicated. Defaults are the binary's; the sid recipes use window 3. Returns float32 T x D*(order+1).
    """
    x = np.asarray(feats, dtype=np.float32)
    t, d = x.shape
    taps = delta_taps(order, window)
    if t == 0:
        return np.zeros((0, d * (order + 1)), dtype=np.float32)
    reach = order * window
    idx = np.clip(np.arange(-reach, t + reach), 0, t - 1)
    padded = x[idx].astype(np.float64)          # (t + 2*reach) x d, edges replicated
    out = [x.astype(np.float64)]
    for i in range(1, order + 1):
        w = taps[i]
        half = (len(w) - 1) // 2
        acc = np.zeros((t, d), dtype=np.float64)
        for j, c in enumerate(w):               # loop over filter taps, not frames
            if c != 0.0:
                start = reach - half + j
                acc += c * padded[start:start + t]
        out.append(acc)
    return np.concatenate(out, axis=1).astype(np.float32)


def cmvn_window_bounds(t: int, cmn_window: int = 600, min_window: int = 100,
                       center: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Half-open window ``[start, end)`` of every frame, as Kaldi's SlidingWindowCmnInternal sets it."""
    idx = np.arange(t, dtype=np.int64)
    if center:
        start = idx - cmn_window // 2
        end = start + cmn_window
    else:
        start = idx - cmn_window
        end = idx + 1
    shift = np.minimum(start, 0)
    end = end - shift
    start = start - shift
    if not center:
        end = np.maximum(idx + 1, min_window)
    over = np.maximum(end - t, 0)
    start = np.maximum(start - over, 0)
    end = end - over
    return start, end


def apply_cmvn_sliding(feats: np.ndarray, cmn_window: int = 600, min_window: int = 100,
                       center: bool = False, norm_vars: bool = False) -> np.ndarray:
    """``apply-cmvn-sliding``: subtract the mean (and with ``norm_vars`` divide by the standard deviation,
    variance floored at 1e-10) over a sliding window, using float64 prefix sums. Defaults are the
    binary's; the sid recipes use ``cmn_window=300, center=True``. Returns float32.
    """
    if cmn_window <= 0 or min_window <= 0:
        raise ValueError(f"cmn_window and min_window must be > 0, got {cmn_window}, {min_window}")
    x = np.asarray(feats, dtype=np.float64)
    t, d = x.shape
    if t == 0:
        return np.zeros((0, d), dtype=np.float32)
    start, end = cmvn_window_bounds(t, cmn_window, min_window, center)
    n = (end - start).astype(np.float64)[:, None]
    csum = np.vstack([np.zeros((1, d)), np.cumsum(x, axis=0)])
    mean = (csum[end] - csum[start]) / n
    y = x - mean
    if norm_vars:
        csq = np.vstack([np.zeros((1, d)), np.cumsum(x * x, axis=0)])
        var = (csq[end] - csq[start]) / n - mean * mean
        y = y / np.sqrt(np.maximum(var, 1e-10))
    return y.astype(np.float32)


def select_voiced_frames(feats: np.ndarray, vad: np.ndarray, where: str = "") -> np.ndarray:
    """``select-voiced-frames``: the rows whose VAD value is non-zero, in order.

    A VAD vector whose length differs from the number of frames is an error naming ``where``.
    The result may be empty (Kaldi then skips the utterance).
    """
    feats = np.asarray(feats)
    vad = np.asarray(vad).reshape(-1)
    if vad.shape[0] != feats.shape[0]:
        raise DataError(f"{where + ': ' if where else ''}VAD has {vad.shape[0]} frames but the features "
                        f"have {feats.shape[0]}")
    return feats[vad != 0]


def subsample_feats(feats: np.ndarray, n: int, offset: int = 0) -> np.ndarray:
    """``subsample-feats --n=n --offset=offset``: every n-th row from ``offset`` (n > 0), or each row
    repeated -n times (n < 0), as Kaldi does."""
    feats = np.asarray(feats)
    if n == 0:
        raise ValueError("subsample-feats: n must be non-zero")
    if n > 0:
        if not 0 <= offset < n:
            raise ValueError(f"subsample-feats: offset must be in [0, {n}), got {offset}")
        return feats[offset::n]
    return np.repeat(feats, -n, axis=0)
