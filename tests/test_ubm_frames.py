"""sid frame features (docs/ivector.md §3): deltas → sliding CMN on all frames → voiced frames, the options
file, and reading a data dir (C order, skipped utterances, missing VAD, subsampling)."""

from __future__ import annotations

import logging

import kaldiio
import numpy as np
import pytest
from sslsv.features import add_deltas, apply_cmvn_sliding
from sslsv.ivector.frames import FrameOptions, iter_frames, sid_frames
from sslsv.tables import DataError


def slow_deltas(x: np.ndarray, window: int) -> np.ndarray:
    """Order-2 deltas from the taps of §3.1, frame by frame, edges replicated."""
    ramp = np.arange(-window, window + 1, dtype=np.float64)
    w1 = ramp / (ramp ** 2).sum()
    w2 = np.convolve(w1, ramp) / (ramp ** 2).sum()
    t = x.shape[0]
    out = np.zeros((t, 3 * x.shape[1]))
    for i in range(t):
        d1 = sum(w1[j + window] * x[min(max(i + j, 0), t - 1)] for j in range(-window, window + 1))
        d2 = sum(w2[j + 2 * window] * x[min(max(i + j, 0), t - 1)]
                 for j in range(-2 * window, 2 * window + 1))
        out[i] = np.concatenate([x[i], d1, d2])
    return out


def slow_cmn(x: np.ndarray, w: int) -> np.ndarray:
    """§3.2 with center=true, one window at a time."""
    t = x.shape[0]
    out = np.zeros_like(x, dtype=np.float64)
    for i in range(t):
        s = i - w // 2
        e = s + w
        if s < 0:
            e -= s
            s = 0
        if e > t:
            s = max(s - (e - t), 0)
            e = t
        out[i] = x[i] - x[s:e].mean(0)
    return out


@pytest.mark.parametrize("t", [7, 400])
def test_sid_frames_equals_composed_reference(t):
    rng = np.random.default_rng(0)
    feats = (rng.standard_normal((t, 4)) * 3 + 10).astype(np.float32)
    vad = (rng.random(t) > 0.4).astype(np.float32)
    opts = FrameOptions(delta_window=3, delta_order=2, cmn_window=300)
    got = sid_frames(feats, vad, opts)
    assert got.dtype == np.float32 and got.shape == (int(vad.sum()), 12)
    composed = apply_cmvn_sliding(add_deltas(feats, 2, 3), cmn_window=300, center=True)[vad != 0]
    np.testing.assert_array_equal(got, composed)
    by_hand = slow_cmn(slow_deltas(feats.astype(np.float64), 3), 300)[vad != 0]
    np.testing.assert_allclose(got, by_hand, atol=2e-4)
    # CMN uses ALL frames, not just the voiced ones: different from normalising the voiced rows
    voiced_first = slow_cmn(slow_deltas(feats.astype(np.float64), 3)[vad != 0], 300)
    assert np.abs(voiced_first - got).max() > 1e-3


def test_sid_frames_bad_vad_length():
    with pytest.raises(DataError, match="x.scp: u1: VAD has 3 frames but the features have 4"):
        sid_frames(np.zeros((4, 2), np.float32), np.ones(3), FrameOptions(), where="x.scp: u1")


def test_frame_options(tmp_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("features:\n  delta_window: 2\n  delta_order: 1\n  cmn_window: 100\n")
    o = FrameOptions.from_config(cfg)
    assert o == FrameOptions(2, 1, 100) and o.dim_factor == 2
    o.save(tmp_path / "frame_opts")
    assert FrameOptions.load(tmp_path / "frame_opts") == o
    (tmp_path / "bad").write_text("delta_widow: 3\n")
    with pytest.raises(DataError, match="unknown frame option"):
        FrameOptions.load(tmp_path / "bad")


def write_dir(d, mats: dict, vads: dict) -> None:
    d.mkdir(parents=True, exist_ok=True)
    with kaldiio.WriteHelper(f"ark,scp:{d}/feats.ark,{d}/feats.scp") as w:
        for k in sorted(mats):
            w(k, mats[k])
    with kaldiio.WriteHelper(f"ark,scp:{d}/vad.ark,{d}/vad.scp") as w:
        for k in sorted(vads):
            w(k, vads[k])


def test_iter_frames(tmp_path, caplog):
    rng = np.random.default_rng(1)
    mats = {u: rng.standard_normal((n, 3)).astype(np.float32) for u, n in
            (("b", 20), ("a", 15), ("B", 12), ("c", 9))}
    vads = {u: (rng.random(m.shape[0]) > 0.3).astype(np.float32) for u, m in mats.items()}
    vads["c"][:] = 0.0                                               # no voiced frames: skipped
    write_dir(tmp_path / "d", mats, vads)
    opts = FrameOptions()
    with caplog.at_level(logging.WARNING, logger="sslsv.ivector.frames"):
        got = list(iter_frames(tmp_path / "d", opts))
    assert [u for u, _ in got] == ["B", "a", "b"]                    # C order
    assert "c: no voiced frames" in caplog.text
    for u, x in got:
        np.testing.assert_array_equal(x, sid_frames(mats[u], vads[u], opts))
    sub = dict(iter_frames(tmp_path / "d", opts, subsample=5, utts=["b", "a"]))
    assert list(sub) == ["a", "b"]
    np.testing.assert_array_equal(sub["b"], sid_frames(mats["b"], vads["b"], opts)[::5])
    # a missing VAD entry names vad.scp
    lines = (tmp_path / "d/vad.scp").read_text().splitlines()
    (tmp_path / "d/vad.scp").write_text("\n".join(v for v in lines if not v.startswith("a ")) + "\n")
    with pytest.raises(DataError, match=r"vad.scp: no VAD entry for utterance 'a'"):
        list(iter_frames(tmp_path / "d", opts))
