"""Corruption on the training device (sslsv.embed.device_augment): the counter-based Gaussian generator
against a literal splitmix64 and a normal distribution, reverberation and noise against the worker path's
numpy functions fed the same Gaussian samples, the SNR and odds of the plans, batch invariance, and the
training items of ``augment.compute: device``."""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import kaldiio
import numpy as np
import pytest
import soundfile as sf
import torch
from scipy import stats
from sslsv import augment
from sslsv.embed import device_augment as da
from sslsv.embed.data import CORRUPTIONS, AugConfig, ChunkDataset, FeatureConfig, read_training_list
from sslsv.tables import DataError

ROOT = Path(__file__).resolve().parents[1]
RATE = 16000
M64 = (1 << 64) - 1


def _splitmix64(z: int) -> int:
    """The reference finaliser on Python integers (unsigned 64-bit)."""
    z &= M64
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & M64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & M64
    return z ^ (z >> 31)


def test_counter_normal_is_splitmix64_and_box_muller() -> None:
    keys = [0, 1, 12345678901234567, (1 << 62) - 1]
    got = da.counter_normal(torch.tensor(keys), 5, 3, torch.float64).numpy()
    for b, key in enumerate(keys):
        for t in range(5):
            z = _splitmix64(key + ((3 << 32) + t // 2 + 1) * 0x9E3779B97F4A7C15)
            u1 = ((z >> 40) + 0.5) / 2**24
            u2 = ((z >> 16) & 0xFFFFFF) / 2**24
            trig = math.cos if t % 2 == 0 else math.sin
            ref = math.sqrt(-2 * math.log(u1)) * trig(2 * math.pi * u2)
            assert got[b, t] == pytest.approx(ref, abs=1e-12)
    f32 = da.counter_normal(torch.tensor(keys), 5, 3).numpy()
    assert f32.dtype == np.float32 and np.allclose(f32, got, atol=1e-5)


def test_counter_normal_distribution_and_independence() -> None:
    keys = torch.arange(40, dtype=torch.int64) * 7919
    x = da.counter_normal(keys, 25000, da.STREAM_NOISE, torch.float64)
    v = x.flatten().numpy()
    assert abs(v.mean()) < 0.005 and abs(v.std() - 1) < 0.005
    assert stats.kstest(v[:200000], "norm").pvalue > 1e-3
    c = np.corrcoef(x.numpy())
    assert np.abs(c[~np.eye(40, dtype=bool)]).max() < 0.03                    # rows independent
    other = da.counter_normal(keys, 25000, da.STREAM_DITHER, torch.float64)
    assert abs(float((x * other).mean())) < 0.005                              # streams independent
    # a row depends on its key only, not on the batch it is in
    assert torch.equal(da.counter_normal(keys[5:6], 25000, da.STREAM_NOISE, torch.float64), x[5:6])


def _plan(**kw) -> np.ndarray:
    p = np.zeros(da.PLAN_SIZE)
    p[da.BAND_HI] = RATE / 2
    for k, v in kw.items():
        p[getattr(da, k.upper())] = v
    return p


def test_reverberation_equals_the_worker_function() -> None:
    rng = np.random.default_rng(0)
    x = rng.standard_normal((3, 32240)) * 3000
    plans = np.stack([_plan(type=da.REVERB, rt60=r, drr=d)
                      for r, d in ((0.2, 0.0), (0.55, 4.0), (1.0, 10.0))])
    keys = torch.tensor([11, 22, 33])
    tails = da.rir_tails(torch.from_numpy(plans), keys, RATE).numpy()
    for b in range(3):
        n_tail = max(round(1.25 * plans[b, da.RT60] * RATE), 1)
        assert np.all(tails[b, n_tail:] == 0) and np.all(tails[b, :n_tail] != 0)
        # synth_rir's definition: exponential decay of the same Gaussian samples, energy 10^(-DRR/10)
        w = da.counter_normal(keys[b:b + 1], n_tail, da.STREAM_RIR, torch.float64).numpy()[0]
        t = np.arange(1, n_tail + 1) / RATE
        ref = w * np.exp(-3 * np.log(10) * t / plans[b, da.RT60])
        ref *= np.sqrt(10 ** (-plans[b, da.DRR] / 10) / np.sum(ref**2))
        if np.abs(ref).max() > 0.9:
            ref *= 0.9 / np.abs(ref).max()
        np.testing.assert_allclose(tails[b, :n_tail], ref, rtol=1e-9, atol=1e-12)
    for norm in ("power", "direct", "none"):
        y = da.reverberate(torch.from_numpy(x), torch.from_numpy(tails), norm).numpy()
        for b in range(3):
            n_tail = max(round(1.25 * plans[b, da.RT60] * RATE), 1)
            h = np.concatenate([np.zeros(40), [1.0], tails[b, :n_tail]])      # any pre-delay: no effect
            np.testing.assert_allclose(y[b], augment.reverberate(x[b], h, norm), rtol=1e-7, atol=1e-6)


class _Feed:
    """A stand-in generator for make_noise: the given Gaussian samples and modulation phase."""

    def __init__(self, w: np.ndarray, phase: float) -> None:
        self.w, self.phase = w, phase

    def standard_normal(self, n: int) -> np.ndarray:
        return self.w[:n]

    def uniform(self, lo: float, hi: float) -> float:
        return self.phase


@pytest.mark.parametrize("kind", augment.NOISE_KINDS)
def test_noise_equals_make_noise(kind: str) -> None:
    n = 32240
    shapes = [(None, None), ((300.0, 2500.0), None), (None, (2.0, 0.7)), ((80.0, 7999.0), (0.5, 0.3))]
    plans = np.stack([_plan(type=da.NOISE, beta=augment.NOISE_BETA[kind], band_lo=b[0] if b else 0,
                            band_hi=b[1] if b else RATE / 2, mod_freq=m[0] if m else 0,
                            mod_depth=m[1] if m else 0, mod_phase=1.3 if m else 0) for b, m in shapes])
    keys = torch.arange(4) + 100
    got = da.shaped_noise(torch.from_numpy(plans), keys, n, RATE, torch.float64).numpy()
    w = da.counter_normal(keys, n, da.STREAM_NOISE, torch.float64).numpy()
    for b, (band, mod) in enumerate(shapes):
        ref = augment.make_noise(kind, n, _Feed(w[b], 1.3), RATE, band, mod)
        np.testing.assert_allclose(got[b], ref, rtol=1e-7, atol=1e-7)


def test_snr_and_peak() -> None:
    rng = np.random.default_rng(1)
    x = torch.from_numpy(rng.standard_normal((4, 32240)) * 2000)
    noise = torch.from_numpy(rng.standard_normal((4, 32240)))
    noise = noise / noise.pow(2).mean(-1, keepdim=True).sqrt()
    snr = torch.tensor([0.0, 5.0, 12.5, 20.0], dtype=torch.float64)
    y = da.add_noise(x, noise, snr)
    got = 10 * torch.log10(x.pow(2).mean(-1) / (y - x).pow(2).mean(-1))
    np.testing.assert_allclose(got.numpy(), snr.numpy(), atol=1e-9)
    loud = da.add_noise(x * 10, noise, snr)                  # would clip: scaled down, SNR kept
    assert float(loud.abs().max()) <= augment.INT16_PEAK + 1e-6
    silent = da.add_noise(torch.zeros(1, 100, dtype=torch.float64), noise[:1, :100], snr[:1])
    assert torch.equal(silent, torch.zeros(1, 100, dtype=torch.float64))


def test_plan_odds() -> None:
    cfg = AugConfig()
    rng = np.random.default_rng(2)
    plans = np.stack([da.draw_plan(rng, cfg, RATE) for _ in range(4000)])
    typ = plans[:, da.TYPE].astype(int)
    assert abs(np.mean(typ > 0) - 0.6) < 0.03
    got = np.bincount(typ[typ > 0] - 1, minlength=4) / np.sum(typ > 0)
    np.testing.assert_allclose(got, cfg.weights, atol=0.035)
    rev = plans[np.isin(typ, [da.REVERB, da.REVERB_NOISE])]
    assert rev[:, da.RT60].min() >= 0.2 and rev[:, da.RT60].max() <= 1.0
    noi = plans[np.isin(typ, [da.NOISE, da.REVERB_NOISE])]
    assert noi[:, da.SNR].min() >= 0 and noi[:, da.SNR].max() <= 15
    assert abs(np.mean(noi[:, da.BAND_LO] > 0) - 0.5) < 0.08
    assert abs(np.mean(noi[:, da.MOD_DEPTH] > 0) - 0.3) < 0.08
    codes = (da.REVERB, da.NOISE, da.BABBLE, da.REVERB_NOISE)
    assert [CORRUPTIONS[t - 1] for t in codes] == list(CORRUPTIONS)


@pytest.fixture(scope="module")
def datadir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """3 speakers x 3 utterances of 3-6 s noise-like speech, every frame voiced."""
    d = tmp_path_factory.mktemp("devaug")
    rng = np.random.default_rng(3)
    wav, u2s, vads = [], [], {}
    for s in range(3):
        for u in range(3):
            utt, n = f"s{s}-u{u}", int(RATE * rng.uniform(3, 6))
            t = np.arange(n) / RATE
            x = 4000 * np.sin(2 * np.pi * (120 + 40 * s) * t) + 300 * rng.standard_normal(n)
            sf.write(d / f"{utt}.flac", x.astype(np.int16), RATE, subtype="PCM_16")
            wav.append(f"{utt} {d / f'{utt}.flac'}")
            u2s.append(f"{utt} s{s}")
            vads[utt] = np.ones((n + 80) // 160, dtype=np.float32)
    (d / "wav.scp").write_text("\n".join(wav) + "\n")
    (d / "utt2spk").write_text("\n".join(u2s) + "\n")
    kaldiio.save_ark(str(d / "vad.ark"), vads, scp=str(d / "vad.scp"))
    return d


def test_device_items_and_batches(datadir: Path) -> None:
    tl = read_training_list(datadir)
    feat = FeatureConfig(mfcc_config=str(ROOT / "conf/mfcc_embed.conf"), compute="device")
    aug = dataclasses.replace(AugConfig(aug_prob=1.0), compute="device", speed_perturb=True)
    ds = ChunkDataset(tl, feat, aug, seed=5)
    worker = ChunkDataset(tl, feat, dataclasses.replace(aug, compute="worker"), seed=5)
    items = [ds[i] for i in range(len(tl))]
    types = set()
    for i, (x, label) in enumerate(items):
        assert set(x) == {"wave", "plan", "key"} and x["wave"].shape == (ds._chunk,)
        assert label == worker[i][1]                               # same speed draw: same class
        t = int(x["plan"][da.TYPE])
        types.add(t)
        if t != da.BABBLE:                                         # the chunk is the worker path's chunk
            np.testing.assert_array_equal(x["wave"].numpy(), ds._cut(i, 0)[0].astype(np.float32))
        y2, _ = ds[i]                                              # deterministic
        assert all(torch.equal(x[k], y2[k]) for k in x)
    assert len(types) >= 3
    batch = torch.utils.data.default_collate([x for x, _ in items])
    out = da.apply(batch["wave"], batch["plan"], batch["key"], RATE, aug.reverb_norm, 1.0)
    assert out.shape == (len(tl), ds._chunk) and out.dtype == torch.float32
    for i in range(len(tl)):                                       # one item alone gives the same
        one = da.apply(batch["wave"][i:i + 1], batch["plan"][i:i + 1], batch["key"][i:i + 1], RATE,
                       aug.reverb_norm, 1.0)
        torch.testing.assert_close(one[0], out[i], rtol=1e-5, atol=1e-2)
        diff = (out[i] - batch["wave"][i]).pow(2).mean()
        if int(batch["plan"][i, da.TYPE]) in (da.NOISE, da.REVERB_NOISE, da.REVERB):
            assert float(diff) > 100                               # corrupted
        else:
            assert float(diff) == pytest.approx(1.0, rel=0.05)     # dither only
    views = ChunkDataset(tl, feat, aug, seed=5, views=2)[0][0]
    assert views["wave"].shape == (2, ds._chunk) and views["key"].shape == (2,)
    assert torch.equal(views["wave"][0], items[0][0]["wave"])


def test_device_augmentation_needs_device_features() -> None:
    from sslsv.embed.config import load_embed_config
    from sslsv.embed.trainer import RunConfig

    cfg = load_embed_config(ROOT / "conf/embed/ecapa_xs.yaml", ["augment.compute=device"])
    with pytest.raises(DataError, match="features.compute=device"):
        RunConfig.from_dict(cfg)
    cfg = load_embed_config(ROOT / "conf/embed/ecapa_xs.yaml", ["augment.compute=gpu"])
    with pytest.raises(DataError, match="compute must be worker or device"):
        RunConfig.from_dict(cfg)
