"""Energy VAD (Kaldi compute-vad, docs/ivector.md §2): hand-computed cases, a literal per-frame loop
reference, and the recipe's config on real speech."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from sslsv.features.kaldi_options import VadConfig, read_vad_config
from sslsv.features.vad import compute_vad
from sslsv.tables import DataError

ROOT = Path(__file__).resolve().parents[1]


def loop_vad(energy: np.ndarray, cfg: VadConfig) -> np.ndarray:
    """docs/ivector.md §2 written literally, one frame at a time (float32 as Kaldi)."""
    e = energy.astype(np.float32)
    t = len(e)
    thr = np.float32(cfg.vad_energy_threshold)
    if cfg.vad_energy_mean_scale != 0:
        thr = np.float32(thr + np.float32(np.float32(cfg.vad_energy_mean_scale)
                                          * np.float32(e.astype(np.float64).sum())) / np.float32(t))
    out = np.zeros(t, dtype=np.float32)
    for i in range(t):
        num = den = 0
        for u in range(i - cfg.vad_frames_context, i + cfg.vad_frames_context + 1):
            if 0 <= u < t:
                den += 1
                num += int(e[u] > thr)
        out[i] = 1.0 if num >= np.float32(den) * np.float32(cfg.vad_proportion_threshold) else 0.0
    return out


def _feats(energy: list[float] | np.ndarray) -> np.ndarray:
    e = np.asarray(energy, dtype=np.float32)
    return np.column_stack([e, np.full_like(e, 123.0)])      # other columns must be ignored


E10 = [1, 2, 9, 10, 8, 3, 2, 12, 1, 2]      # mean 5.0


def test_hand_computed_context_0() -> None:
    # threshold = 5.5 + 0.5 * 5.0 = 8.0; voiced iff E > 8 (strict: E = 8 is not voiced)
    cfg = VadConfig(vad_energy_threshold=5.5, vad_energy_mean_scale=0.5)
    assert compute_vad(_feats(E10), cfg).tolist() == [0, 0, 1, 1, 0, 0, 0, 1, 0, 0]


def test_hand_computed_context_2() -> None:
    # above = [0,0,1,1,0,0,0,1,0,0]; windows [t-2, t+2] clipped; voiced iff num >= 0.6 * den
    # t=0: 1/3  t=1: 2/4  t=2: 2/5  t=3: 2/5  t=4: 2/5  t=5: 2/5  t=6: 1/5  t=7: 1/5  t=8: 1/4  t=9: 1/3
    cfg = VadConfig(vad_energy_threshold=5.5, vad_energy_mean_scale=0.5, vad_frames_context=2)
    assert compute_vad(_feats(E10), cfg).tolist() == [0] * 10
    # with p = 0.4: 2/5 >= 0.4 passes, 1/3 and 1/4 do not; 2/4 passes
    cfg = VadConfig(vad_energy_threshold=5.5, vad_energy_mean_scale=0.5, vad_frames_context=2,
                    vad_proportion_threshold=0.4)
    assert compute_vad(_feats(E10), cfg).tolist() == [0, 1, 1, 1, 1, 1, 0, 0, 0, 0]


def test_mean_scale_zero_uses_fixed_threshold() -> None:
    cfg = VadConfig(vad_energy_threshold=2.0, vad_energy_mean_scale=0.0)
    assert compute_vad(_feats(E10), cfg).tolist() == [0, 0, 1, 1, 1, 1, 0, 1, 0, 0]


@pytest.mark.parametrize("context,p", [(0, 0.6), (1, 0.5), (2, 0.6), (3, 0.3), (7, 0.9), (50, 0.6)])
def test_against_loop_reference(context: int, p: float) -> None:
    rng = np.random.default_rng(context)
    e = rng.normal(14, 3, size=400).astype(np.float32)
    e[100:180] = rng.normal(2, 1, size=80)
    cfg = VadConfig(vad_energy_threshold=5.5, vad_energy_mean_scale=0.5, vad_frames_context=context,
                    vad_proportion_threshold=p)
    got = compute_vad(_feats(e), cfg)
    assert got.dtype == np.float32
    np.testing.assert_array_equal(got, loop_vad(e, cfg))
    assert 0 < got.sum() < len(got)


def test_short_and_empty_inputs() -> None:
    cfg = VadConfig(vad_frames_context=3)
    assert compute_vad(np.zeros((0, 24), np.float32), cfg).shape == (0,)
    np.testing.assert_array_equal(compute_vad(_feats([7.0]), cfg), loop_vad(np.array([7.0]), cfg))
    with pytest.raises(DataError):
        compute_vad(np.zeros(5, np.float32), cfg)


def test_bad_vad_options(tmp_path: Path) -> None:
    f = tmp_path / "vad.conf"
    f.write_text("--vad-energy-threshold=5.5\n--vad-energy-meanscale=0.5\n")
    with pytest.raises(DataError, match=rf"{f}:2: unknown option --vad-energy-meanscale"):
        read_vad_config(f)
    f.write_text("--vad-proportion-threshold=1.5\n")
    with pytest.raises(DataError, match="must be in \\(0, 1\\)"):
        read_vad_config(f)


def test_recipe_config_on_real_speech(speechocean: Path) -> None:
    """Real read speech (not the demo's synthesised speech, which has almost no pauses)."""
    from sslsv.audio import read_audio
    from sslsv.features import compute_mfcc, read_mfcc_config

    path = speechocean / "audio" / "000010011.flac"
    x, sr = read_audio(str(path))
    feats = compute_mfcc(x, sr, read_mfcc_config(ROOT / "conf" / "mfcc.conf", ["--dither=0"]))
    cfg = read_vad_config(ROOT / "conf" / "vad.conf")
    vad = compute_vad(feats, cfg)
    np.testing.assert_array_equal(vad, loop_vad(feats[:, 0], cfg))
    assert 0.3 < vad.mean() < 0.95          # a read sentence with pauses at the ends
