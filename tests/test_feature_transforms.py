"""add-deltas, apply-cmvn-sliding, select-voiced-frames and subsample-feats (docs/ivector.md §3):
hand-computed cases, knf.compute_deltas, and a literal per-frame reference of the sliding window."""

from __future__ import annotations

import kaldi_native_fbank as knf
import numpy as np
import pytest
from sslsv.features.transforms import (
    add_deltas,
    apply_cmvn_sliding,
    delta_taps,
    select_voiced_frames,
    subsample_feats,
)
from sslsv.tables import DataError


def test_delta_taps_hand_computed() -> None:
    t = delta_taps(2, 3)
    np.testing.assert_allclose(t[1] * 28, [-3, -2, -1, 0, 1, 2, 3])
    np.testing.assert_allclose(t[2] * 784, [9, 12, 10, 4, -5, -16, -28, -16, -5, 4, 10, 12, 9])
    np.testing.assert_allclose(delta_taps(3, 1)[3], [-0.125, 0, 0.375, 0, -0.375, 0, 0.125])


def test_add_deltas_hand_computed() -> None:
    x = np.array([[1.0], [2.0], [4.0]], dtype=np.float32)
    # window 1: d_t = (x_{t+1} - x_{t-1}) / 2, dd_t = (x_{t-2} - 2 x_t + x_{t+2}) / 4, edges replicated
    np.testing.assert_allclose(add_deltas(x, order=2, window=1),
                               [[1, 0.5, 0.75], [2, 1.5, 0.25], [4, 1.0, -0.75]], atol=1e-7)
    y = np.array([[3], [1], [4], [1], [5]], dtype=np.float32)
    np.testing.assert_allclose(add_deltas(y, order=1, window=2)[:, 1], [0.0, -0.3, 0.4, 0.9, 0.6], atol=1e-6)


@pytest.mark.parametrize("order,window", [(2, 2), (2, 3), (1, 1), (3, 2), (0, 2)])
@pytest.mark.parametrize("t", [1, 4, 13, 200])
def test_add_deltas_matches_knf(order: int, window: int, t: int) -> None:
    x = np.random.default_rng(t).normal(0, 5, size=(t, 24)).astype(np.float32)
    got = add_deltas(x, order=order, window=window)
    ref = knf.compute_deltas(knf.DeltaOptions(order=order, window=window), x)
    assert got.shape == (t, 24 * (order + 1)) and got.dtype == np.float32
    np.testing.assert_allclose(got, ref, atol=1e-5)
    np.testing.assert_array_equal(got[:, :24], x)


def loop_cmvn(x: np.ndarray, cmn_window: int, min_window: int, center: bool, norm_vars: bool) -> np.ndarray:
    """docs/ivector.md §3.2 literally, frame by frame, in float64."""
    t_all = x.shape[0]
    x = x.astype(np.float64)
    out = np.empty_like(x)
    for t in range(t_all):
        if center:
            s = t - cmn_window // 2
            e = s + cmn_window
        else:
            s = t - cmn_window
            e = t + 1
        if s < 0:
            e -= s
            s = 0
        if not center:
            e = max(t + 1, min_window)
        if e > t_all:
            s -= e - t_all
            e = t_all
            s = max(s, 0)
        win = x[s:e]
        mean = win.sum(axis=0) / (e - s)
        y = x[t] - mean
        if norm_vars:
            var = (win ** 2).sum(axis=0) / (e - s) - mean ** 2
            y = y / np.sqrt(np.maximum(var, 1e-10))
        out[t] = y
    return out


@pytest.mark.parametrize("t", [1, 7, 50, 300, 301, 777])
@pytest.mark.parametrize("center,norm_vars", [(True, False), (False, False), (True, True), (False, True)])
def test_cmvn_sliding_against_loop(t: int, center: bool, norm_vars: bool) -> None:
    # window 300 / min-window 100 (the binary's min-window): T < W, T == W, T > W
    x = np.random.default_rng(t).normal(3, 2, size=(t, 6)).astype(np.float32)
    x[: t // 3] += 10                                        # a level shift the window must follow
    got = apply_cmvn_sliding(x, cmn_window=300, min_window=100, center=center, norm_vars=norm_vars)
    ref = loop_cmvn(x, 300, 100, center, norm_vars)
    assert got.dtype == np.float32
    np.testing.assert_allclose(got, ref, atol=2e-5 if norm_vars else 1e-5, rtol=1e-5)


def test_cmvn_sliding_small_windows_and_hand_case() -> None:
    x = np.arange(6, dtype=np.float32)[:, None]              # 0..5
    # centered W=3: windows [0,3) [0,3) [1,4) [2,5) [3,6) [3,6) -> means 1,1,2,3,4,4
    np.testing.assert_allclose(apply_cmvn_sliding(x, cmn_window=3, center=True)[:, 0],
                               [-1, 0, 0, 0, 0, 1])
    # not centered, W=2, min-window 4: windows [0,4) [0,4) [0,4) [1,4) [2,5) [3,6) -> 1.5,1.5,1.5,2,3,4
    np.testing.assert_allclose(apply_cmvn_sliding(x, cmn_window=2, min_window=4, center=False)[:, 0],
                               [-1.5, -0.5, 0.5, 1, 1, 1])
    for w in (1, 2, 5, 6, 9):
        for c in (True, False):
            for mw in (1, 3, 100):
                np.testing.assert_allclose(apply_cmvn_sliding(x, w, mw, c, True),
                                           loop_cmvn(x, w, mw, c, True), atol=1e-5)
    assert apply_cmvn_sliding(np.zeros((0, 4), np.float32), 300).shape == (0, 4)


def test_cmvn_sliding_short_utterance_is_global_mean() -> None:
    x = np.random.default_rng(1).normal(size=(120, 5)).astype(np.float32)
    np.testing.assert_allclose(apply_cmvn_sliding(x, 300, center=True), x - x.mean(axis=0), atol=1e-6)


def test_select_voiced_frames() -> None:
    x = np.arange(10, dtype=np.float32).reshape(5, 2)
    vad = np.array([1, 0, 1, 1, 0], dtype=np.float32)
    np.testing.assert_array_equal(select_voiced_frames(x, vad), x[[0, 2, 3]])
    assert select_voiced_frames(x, np.zeros(5)).shape == (0, 2)
    with pytest.raises(DataError, match="vad.scp:3: VAD has 4 frames but the features have 5"):
        select_voiced_frames(x, vad[:4], where="vad.scp:3")


def test_subsample_feats() -> None:
    x = np.arange(12, dtype=np.float32).reshape(12, 1)
    assert subsample_feats(x, 5)[:, 0].tolist() == [0, 5, 10]
    assert subsample_feats(x, 5, offset=2)[:, 0].tolist() == [2, 7]
    assert subsample_feats(x[:3], -2)[:, 0].tolist() == [0, 0, 1, 1, 2, 2]
    assert subsample_feats(x[:0], 5).shape == (0, 1)
    with pytest.raises(ValueError):
        subsample_feats(x, 0)


def test_voxceleb_chain_shapes() -> None:
    """MFCC(24) -> deltas (window 3, order 2) -> CMN 300 centred -> voiced -> every 5th: 72 dims."""
    x = np.random.default_rng(0).normal(size=(437, 24)).astype(np.float32)
    vad = (np.arange(437) % 3 != 0).astype(np.float32)
    y = subsample_feats(select_voiced_frames(apply_cmvn_sliding(add_deltas(x, 2, 3), 300, center=True),
                                             vad), 5)
    assert y.shape == (int(np.ceil(vad.sum() / 5)), 72)
