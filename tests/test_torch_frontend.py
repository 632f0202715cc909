"""The batched torch Kaldi front end (sslsv.features.torch_frontend) against kaldi-native-fbank through
``compute_mfcc`` with ``--dither=0``: MFCC and fbank for the recipe's configs and variants (snip-edges
off, other windows and lifters, energy options), on noise, a sine sweep and speech; frame counts;
Kaldi's edge reflection against a literal loop; batch independence; dtype, autocast, buffers; CUDA."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from conftest import SpeechAudio
from sslsv.features.kaldi_options import MfccConfig, read_mfcc_config
from sslsv.features.mfcc import compute_mfcc, num_frames
from sslsv.features.torch_frontend import KaldiFeatures, dct_matrix, lifter_coeffs, window_function

ROOT = Path(__file__).resolve().parents[1]
RATE = 16000
# Max |module - knf| allowed on log-domain values. Observed: <= 1.3e-3 on MFCC of speech (c0..c39 span
# about -95..130), <= 6.3e-4 on fbank of speech (span -3..26), <= 2.7e-4 on noise and the sweep.
TOL = 3e-3


def _conf(name: str, **changes) -> MfccConfig:
    return dataclasses.replace(read_mfcc_config(ROOT / "conf" / name), dither=0.0, **changes)


def _noise(n: int = 32240, seed: int = 0) -> np.ndarray:
    return (1000.0 * np.random.default_rng(seed).standard_normal(n)).astype(np.float32)


def _sweep(n: int = 32240) -> np.ndarray:
    """Linear chirp 50 Hz -> 7950 Hz at amplitude 8000 (int16 scale), rounded to integers."""
    t = np.arange(n) / RATE
    dur = n / RATE
    phase = 2 * np.pi * (50.0 * t + (7950.0 - 50.0) * t ** 2 / (2 * dur))
    return np.round(8000.0 * np.sin(phase)).astype(np.float32)


@pytest.fixture(scope="module")
def speech(speech_audio: SpeechAudio) -> np.ndarray:
    x, sr = sf.read(next(iter(speech_audio.files.values())), dtype="int16")
    assert sr == RATE and x.ndim == 1
    return x.astype(np.float32)


def _module(cfg: MfccConfig, kind: str, x: np.ndarray) -> np.ndarray:
    return KaldiFeatures(cfg, kind)(torch.from_numpy(x)[None])[0].numpy()


CASES = {
    "mfcc_embed": ("mfcc_embed.conf", "mfcc", {}),
    "fbank_embed": ("fbank_embed.conf", "fbank", {}),
    "mfcc.conf (energy, no snip)": ("mfcc.conf", "mfcc", {}),
    "mfcc.conf no energy": ("mfcc.conf", "mfcc", dict(use_energy=False)),
    "mfcc.conf windowed energy, floor, htk": ("mfcc.conf", "mfcc",
                                              dict(raw_energy=False, energy_floor=3e4, htk_compat=True)),
    "embed no snip, hamming, lifter 30": ("mfcc_embed.conf", "mfcc", dict(
        snip_edges=False, window_type="hamming", cepstral_lifter=30.0)),
    "blackman, no lifter, no dc, fft 400": ("mfcc_embed.conf", "mfcc", dict(
        window_type="blackman", blackman_coeff=0.4, cepstral_lifter=0.0, remove_dc_offset=False,
        round_to_power_of_two=False)),
    "hanning, preemph 0, 24 ceps": ("mfcc.conf", "mfcc", dict(window_type="hanning", use_energy=False,
                                                                preemphasis_coefficient=0.0)),
    "rectangular fbank no snip": ("fbank_embed.conf", "fbank", dict(window_type="rectangular",
                                                                     snip_edges=False)),
    "sine window, htk c0": ("mfcc_embed.conf", "mfcc", dict(window_type="sine", htk_compat=True)),
}


def literal_kaldi(x: np.ndarray, cfg: MfccConfig, kind: str) -> np.ndarray:
    """Float64 reference written from Kaldi's feature code as plain loops (frames, mel bins, FFT bins)."""
    fs, n = cfg.sample_frequency, len(x)
    shift, length, nfft = cfg.window_shift_samples, cfg.window_size_samples, cfg.padded_window_size
    i = np.arange(length)
    a = 2 * np.pi / (length - 1)
    window = {"hanning": 0.5 - 0.5 * np.cos(a * i), "sine": np.sin(np.pi * i / (length - 1)),
              "hamming": 0.54 - 0.46 * np.cos(a * i), "povey": (0.5 - 0.5 * np.cos(a * i)) ** 0.85,
              "rectangular": np.ones(length),
              "blackman": cfg.blackman_coeff - 0.5 * np.cos(a * i)
              + (0.5 - cfg.blackman_coeff) * np.cos(2 * a * i)}[cfg.window_type]

    def mel(f: float) -> float:
        return 1127.0 * np.log(1.0 + f / 700.0)

    high = cfg.high_freq if cfg.high_freq > 0 else fs / 2 + cfg.high_freq
    delta = (mel(high) - mel(cfg.low_freq)) / (cfg.num_mel_bins + 1)
    bank = np.zeros((cfg.num_mel_bins, nfft // 2 + 1))
    for b in range(cfg.num_mel_bins):
        left = mel(cfg.low_freq) + b * delta
        centre, right = left + delta, left + 2 * delta
        for k in range(nfft // 2):
            m = mel(k * fs / nfft)
            if left < m < right:
                bank[b, k] = (m - left) / (centre - left) if m <= centre else (right - m) / (right - centre)
    nb, eps = cfg.num_mel_bins, float(np.finfo(np.float32).eps)
    dct = np.array([[np.sqrt((1 if k == 0 else 2) / nb) * np.cos(np.pi / nb * (j + 0.5) * k)
                     for j in range(nb)] for k in range(cfg.num_ceps)])
    out = []
    for t in range(num_frames(n, cfg)):
        start = t * shift if cfg.snip_edges else t * shift + shift // 2 - length // 2
        idx = []
        for s in range(start, start + length):
            while s < 0 or s >= n:
                s = -s - 1 if s < 0 else 2 * n - 1 - s
            idx.append(s)
        f = x[idx].astype(np.float64)
        if cfg.remove_dc_offset:
            f = f - f.sum() / length
        energy = np.log(max(f @ f, eps))
        if cfg.preemphasis_coefficient != 0:
            f = np.concatenate([[f[0] - cfg.preemphasis_coefficient * f[0]],
                                f[1:] - cfg.preemphasis_coefficient * f[:-1]])
        f = f * window
        if not cfg.raw_energy:
            energy = np.log(max(f @ f, eps))
        logmel = np.log(np.maximum(bank @ np.abs(np.fft.rfft(f, n=nfft)) ** 2, eps))
        if kind == "fbank":
            out.append(logmel)
            continue
        c = dct @ logmel
        q = cfg.cepstral_lifter
        if q != 0:
            c = c * (1 + q / 2 * np.sin(np.pi * np.arange(cfg.num_ceps) / q))
        if cfg.use_energy:
            c[0] = max(energy, np.log(cfg.energy_floor)) if cfg.energy_floor > 0 else energy
        if cfg.htk_compat:
            c = np.concatenate([c[1:], [c[0] if cfg.use_energy else c[0] * np.sqrt(2)]])
        out.append(c)
    return np.array(out)


@pytest.mark.parametrize("case", list(CASES))
def test_float64_module_matches_literal_reference(case: str) -> None:
    """In float64 the module is Kaldi's definitions exactly (observed max diff 2.5e-9)."""
    conf, kind, changes = CASES[case]
    cfg = _conf(conf, **changes)
    m = KaldiFeatures(cfg, kind, dtype=torch.float64)
    x = _sweep(6000) + _noise(6000)
    x[2000:3000] = 0.0
    got = m(torch.from_numpy(x)[None])[0]
    assert got.dtype == torch.float64
    np.testing.assert_allclose(got.numpy(), literal_kaldi(x, cfg, kind), atol=1e-6, rtol=0)


@pytest.mark.parametrize("case", list(CASES))
def test_matches_knf(case: str, speech: np.ndarray) -> None:
    """float32 module vs knf: noise and speech agree to TOL. On the pure sweep most mel bins lie 20+ nats
    (power ratio 1e-9) below the tone, beyond float32's reach: both float32 implementations then differ
    from the float64 values by up to ~0.8 (observed max 0.79 module / 0.64 knf, mean 0.033 / 0.027), so
    there the module must be about as close to the float64 truth as knf is."""
    conf, kind, changes = CASES[case]
    cfg = _conf(conf, **changes)
    dim = cfg.num_ceps if kind == "mfcc" else cfg.num_mel_bins
    for name, x in (("noise", _noise()), ("speech", speech), ("sweep", _sweep())):
        ref = compute_mfcc(x, RATE, cfg, kind=kind)
        got = _module(cfg, kind, x)
        assert got.dtype == np.float32 and got.shape == ref.shape == (num_frames(len(x), cfg), dim), name
        if name != "sweep":
            err = np.abs(got - ref).max()
            assert err < TOL, f"{case} / {name}: max abs diff {err:.2e} (values span {np.ptp(ref):.1f})"
            continue
        truth = KaldiFeatures(cfg, kind, dtype=torch.float64)(torch.from_numpy(x)[None])[0].numpy()
        ours, theirs = np.abs(got - truth), np.abs(ref - truth)
        assert ours.max() <= 2.0 * theirs.max() + TOL, (case, ours.max(), theirs.max())
        assert ours.mean() <= 1.5 * theirs.mean() + 1e-4, (case, ours.mean(), theirs.mean())
        if kind == "fbank":               # bins within 8 nats of the frame's peak are well resolved
            near = ref >= ref.max(axis=1, keepdims=True) - 8.0
            assert np.abs(got - ref)[near].max() < TOL


def test_tolerance_detects_small_option_changes() -> None:
    """TOL is tight enough that a small change of any one option, or dither-sized noise, is caught."""
    cfg = _conf("mfcc_embed.conf")
    x = _noise() + 300 * np.sin(0.05 * np.arange(32240)).astype(np.float32) + 50
    ref = compute_mfcc(x, RATE, cfg)
    assert np.abs(_module(cfg, "mfcc", x) - ref).max() < TOL
    for change in (dict(preemphasis_coefficient=0.96), dict(cepstral_lifter=21.0), dict(low_freq=25.0),
                   dict(high_freq=-410.0), dict(window_type="hanning"), dict(remove_dc_offset=False)):
        err = np.abs(_module(dataclasses.replace(cfg, **change), "mfcc", x) - ref).max()
        assert err > 30 * TOL, (change, err)
    noisy = x + np.random.default_rng(1).standard_normal(len(x)).astype(np.float32)
    assert np.abs(_module(cfg, "mfcc", noisy) - ref).max() > 10 * TOL


def test_digital_silence_and_short_reflected_input() -> None:
    """Zeros hit Kaldi's float-epsilon floors; inputs shorter than a frame (snip-edges off) are reflected
    several times over, as Kaldi's loop does."""
    for cfg, kind in ((_conf("mfcc.conf"), "mfcc"), (_conf("mfcc.conf", raw_energy=False), "mfcc"),
                      (_conf("mfcc.conf", energy_floor=3e4), "mfcc"), (_conf("fbank_embed.conf"), "fbank")):
        z = np.zeros(3000, np.float32)
        np.testing.assert_allclose(_module(cfg, kind, z), compute_mfcc(z, RATE, cfg, kind=kind), atol=1e-4)
    cfg = _conf("mfcc.conf", use_energy=False)
    for n in (80, 100, 170, 399, 401):
        x = _noise(n, seed=n)
        ref = compute_mfcc(x, RATE, cfg)
        assert ref.shape[0] == num_frames(n, cfg) >= 1
        np.testing.assert_allclose(_module(cfg, "mfcc", x), ref, atol=TOL, rtol=0)


def test_reflection_matches_literal_kaldi_loop() -> None:
    cfg = _conf("mfcc.conf")
    m = KaldiFeatures(cfg)
    shift, length = cfg.window_shift_samples, cfg.window_size_samples
    for n in (1, 7, 100, 250, 641):
        wave = torch.arange(n, dtype=torch.float32)[None] + 1000.0     # samples equal their index + 1000
        got = m.frames(wave)[0].numpy().astype(np.int64) - 1000
        want = []
        for f in range(num_frames(n, cfg)):
            row = []
            for j in range(length):
                s = f * shift + shift // 2 - length // 2 + j
                while s < 0 or s >= n:
                    s = -s - 1 if s < 0 else 2 * n - 1 - s
                row.append(s)
            want.append(row)
        np.testing.assert_array_equal(got, np.array(want).reshape(-1, length))


@pytest.mark.parametrize("snip", [True, False])
def test_shapes(snip: bool) -> None:
    for conf, kind, dim in (("mfcc_embed.conf", "mfcc", 40), ("fbank_embed.conf", "fbank", 80)):
        cfg = _conf(conf, snip_edges=snip)
        m = KaldiFeatures(cfg, kind)
        for n in (0, 1, 79, 80, 399, 400, 401, 559, 560, 32240, 32399, 32400):
            out = m(torch.zeros(3, n))
            assert out.shape == (3, num_frames(n, cfg), dim) == (3, m.num_frames(n), m.dim)
            if snip:
                assert out.shape[1] == (0 if n < 400 else 1 + (n - 400) // 160)
            else:
                assert out.shape[1] == (n + 80) // 160
    assert KaldiFeatures(_conf("mfcc_embed.conf"))(torch.zeros(2, 32240)).shape == (2, 200, 40)


def test_batch_rows_are_independent(speech: np.ndarray) -> None:
    cfg = _conf("mfcc_embed.conf")
    m = KaldiFeatures(cfg)
    n = 32240
    rows = [speech[:n], _noise(n), _sweep(n), speech[-n:]]
    batch = m(torch.from_numpy(np.stack(rows))).numpy()
    other = m(torch.from_numpy(np.stack([rows[0], _noise(n, seed=5)]))).numpy()
    np.testing.assert_allclose(batch[0], other[0], atol=1e-5, rtol=0)
    for i, x in enumerate(rows):
        np.testing.assert_allclose(batch[i], _module(cfg, "mfcc", x), atol=1e-5, rtol=0)
        if i != 2:                                  # the pure sweep is float32-limited (test_matches_knf)
            assert np.abs(batch[i] - compute_mfcc(x, RATE, cfg)).max() < TOL


def test_subtract_mean() -> None:
    cfg = _conf("mfcc_embed.conf", subtract_mean=True)
    x = _sweep() + _noise()
    got = _module(cfg, "mfcc", x)
    np.testing.assert_allclose(got.mean(axis=0), 0.0, atol=1e-4)
    assert np.abs(got - compute_mfcc(x, RATE, cfg)).max() < TOL


def test_constant_matrices_by_hand() -> None:
    d = dct_matrix(40, 40)
    np.testing.assert_allclose(d @ d.T, np.eye(40), atol=1e-12)          # orthonormal DCT-II
    np.testing.assert_allclose(d[2, 0], np.sqrt(2 / 40) * np.cos(np.pi / 40 * 0.5 * 2))
    lift = lifter_coeffs(13, 22.0)
    assert lift[0] == 1.0 and lift[11] == pytest.approx(12.0)             # 1 + 11 sin(pi/2)
    np.testing.assert_array_equal(lifter_coeffs(5, 0.0), np.ones(5))
    cfg = MfccConfig()
    w = window_function(cfg)                                              # povey = hann ** 0.85
    assert w[0] == 0.0 and w[-1] == pytest.approx(0.0) and w.max() == pytest.approx(1.0, abs=1e-4)
    ham = window_function(dataclasses.replace(cfg, window_type="hamming"))
    assert ham[0] == pytest.approx(0.08) and ham[-1] == pytest.approx(0.08)
    m = KaldiFeatures(cfg)
    assert m.mel.shape == (257, 23) and float(m.mel[-1].abs().sum()) == 0.0    # Nyquist bin unused
    assert float(m.mel.max()) <= 1.0 and bool((m.mel.sum(0) > 0).all())


def test_dtypes_autocast_buffers_and_errors() -> None:
    cfg = _conf("mfcc_embed.conf")
    m = KaldiFeatures(cfg)
    x = np.round(_noise()).astype(np.float32)
    ref = m(torch.from_numpy(x)[None])
    for w in (torch.from_numpy(x.astype(np.int16)), torch.from_numpy(x.astype(np.float64))):
        torch.testing.assert_close(m(w[None]), ref, atol=1e-5, rtol=0)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = m(torch.from_numpy(x)[None])
    assert out.dtype == torch.float32
    torch.testing.assert_close(out, ref, atol=1e-5, rtol=0)
    assert m.state_dict() == {}                           # recomputable: not stored in checkpoints
    assert {name for name, _ in m.named_buffers()} == {"window", "mel", "dct", "lifter"}
    with pytest.raises(ValueError, match="vtln"):
        KaldiFeatures(dataclasses.replace(cfg, vtln_warp=0.9))
    with pytest.raises(ValueError, match="kind"):
        KaldiFeatures(cfg, "plp")
    with pytest.raises(ValueError, match="batch"):
        m(torch.zeros(32240))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_matches_cpu_and_knf(speech: np.ndarray) -> None:
    """On CUDA: float32 agrees with knf and the CPU module on speech and noise; float64 with the CPU's
    float64 (the algorithm) on the sweep as well."""
    n = 32240
    rows = np.stack([speech[:n], _noise(n), speech[-n:] + _noise(n, seed=2) / 100])
    sweep = torch.from_numpy(np.stack([_sweep(n), _sweep(n)[::-1].copy()])).double()
    for conf, kind in (("mfcc_embed.conf", "mfcc"), ("fbank_embed.conf", "fbank"), ("mfcc.conf", "mfcc")):
        cfg = _conf(conf)
        m = KaldiFeatures(cfg, kind)
        cpu = m(torch.from_numpy(rows)).numpy()
        m = m.to("cuda")
        assert m.mel.device.type == "cuda" and m.window.device.type == "cuda"
        gpu = m(torch.from_numpy(rows).cuda())
        assert gpu.device.type == "cuda" and gpu.dtype == torch.float32
        gpu = gpu.cpu().numpy()
        assert np.abs(gpu - cpu).max() < TOL, conf
        for i, x in enumerate(rows):
            assert np.abs(gpu[i] - compute_mfcc(x, RATE, cfg, kind=kind)).max() < TOL, (conf, i)
        tf32 = torch.backends.cuda.matmul.allow_tf32
        try:                                        # the trainer's setting must not change the features
            torch.backends.cuda.matmul.allow_tf32 = True
            with torch.autocast("cuda", dtype=torch.bfloat16):
                fast = m(torch.from_numpy(rows).cuda()).cpu().numpy()
        finally:
            torch.backends.cuda.matmul.allow_tf32 = tf32
        np.testing.assert_allclose(fast, gpu, atol=1e-5, rtol=0)
        m64 = KaldiFeatures(cfg, kind, dtype=torch.float64)
        want = m64(sweep).numpy()
        got = m64.to("cuda")(sweep.cuda()).cpu().numpy()
        np.testing.assert_allclose(got, want, atol=1e-6, rtol=0)
