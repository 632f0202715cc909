"""The training data pipeline of the embedding network (sslsv.embed.data) on a tiny data dir written here:
chunk lengths, voiced-only samples, determinism (also across DataLoader workers), speed perturbation as
new classes, corruption SNRs, SpecAugment, CMN and extraction features."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import kaldiio
import numpy as np
import pytest
import soundfile as sf
import torch
from sslsv import augment
from sslsv.embed.data import (
    CORRUPTIONS,
    AugConfig,
    ChunkDataset,
    FeatureConfig,
    cmn,
    corrupt,
    read_training_list,
    spec_augment,
    utterance_features,
    voiced_samples,
    worker_init_fn,
)
from sslsv.features.kaldi_options import read_mfcc_config
from sslsv.features.mfcc import compute_mfcc, num_frames
from sslsv.tables import DataError

ROOT = Path(__file__).resolve().parents[1]
MFCC_CONF = str(ROOT / "conf/mfcc_embed.conf")
RATE = 16000
NSPK = 4
SILENT_UTT = "spk2-u1"          # its first 1.5 s are digital silence, marked unvoiced
TONE_UTT = "spk3-u2"            # a pure 500-Hz tone (for the speed-perturbation pitch check)
SHORT_UTT = "spk0-u0"           # 1.0 s: shorter than a chunk, tiled


def _speechlike(n: int, f0: float, rng: np.random.Generator) -> np.ndarray:
    """Harmonics of f0 with a 4-Hz syllable envelope, on the int16 scale, never exactly 0."""
    t = np.arange(n) / RATE
    y = sum(np.sin(2 * np.pi * h * f0 * t + rng.uniform(0, 6.3)) / h for h in range(1, 11))
    y = y * (0.6 + 0.4 * np.sin(2 * np.pi * 4 * t)) + 0.05 * rng.standard_normal(n)
    y = 6000 * y / np.max(np.abs(y))
    return np.where(y >= 0, y + 300, y - 300).round()


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """4 speakers x 3 utterances (1.0-4.0 s); wav.scp, utt2spk, vad.scp/vad.ark written with kaldiio."""
    d = tmp_path_factory.mktemp("tiny")
    rng = np.random.default_rng(7)
    wav, u2s, vads = [], [], {}
    for s in range(NSPK):
        for u in range(3):
            utt = f"spk{s}-u{u}"
            n = RATE if utt == SHORT_UTT else int(RATE * (2.5 + 0.5 * u + 0.25 * s))
            x = _speechlike(n, 110.0 + 35 * s, rng)
            vad = np.ones((n + 80) // 160, dtype=np.float32)
            if utt == SILENT_UTT:
                n = 48000
                x = _speechlike(n, 110.0 + 35 * s, rng)
                x[:24000] = 0.0
                vad = np.ones(300, dtype=np.float32)
                vad[:150] = 0.0
            if utt == TONE_UTT:
                x = np.round(8000 * np.sin(2 * np.pi * 500.0 * np.arange(n) / RATE))
            sf.write(d / f"{utt}.wav", x.astype(np.int16), RATE, subtype="PCM_16")
            wav.append(f"{utt} {d / f'{utt}.wav'}")
            u2s.append(f"{utt} spk{s}")
            vads[utt] = vad
    (d / "wav.scp").write_text("\n".join(wav) + "\n")
    (d / "utt2spk").write_text("\n".join(u2s) + "\n")
    kaldiio.save_ark(str(d / "vad.ark"), vads, scp=str(d / "vad.scp"))
    return d


def _wav(d: Path, utt: str) -> np.ndarray:
    x, _ = sf.read(d / f"{utt}.wav", dtype="int16")
    return x.astype(np.float64)


def _feat(**kw) -> FeatureConfig:
    return FeatureConfig(mfcc_config=MFCC_CONF, **kw)


def _is_slice(chunk: np.ndarray, x: np.ndarray) -> bool:
    """True if ``chunk`` equals ``x[s:s+len(chunk)]`` for some start ``s``."""
    return _slice_start(chunk, x) is not None


def _slice_start(chunk: np.ndarray, x: np.ndarray) -> int | None:
    """The first start ``s`` with ``x[s:s+len(chunk)] == chunk``, or None."""
    cand = np.nonzero(x[:x.size - chunk.size + 1] == chunk[0])[0]
    return next((int(s) for s in cand if np.array_equal(x[s:s + chunk.size], chunk)), None)


# ----------------------------------------------------------------------------------------------------


def test_configs(tmp_path: Path) -> None:
    fc = _feat()
    assert fc.chunk_samples() == 32240 and fc.feat_dim == 40 and fc.sample_rate == 16000
    assert num_frames(32240, fc.mfcc()) == 200 and num_frames(32239, fc.mfcc()) == 199
    conf = tmp_path / "nosnip.conf"
    conf.write_text(Path(MFCC_CONF).read_text() + "--snip-edges=false\n")
    ns = FeatureConfig(mfcc_config=str(conf))
    assert ns.chunk_samples() == 31920         # (31920 + 80) // 160 = 200, one fewer sample gives 199
    assert num_frames(31920, ns.mfcc()) == 200 and num_frames(31919, ns.mfcc()) == 199
    assert FeatureConfig(mfcc_config=MFCC_CONF, chunk_frames=300).chunk_samples() == 299 * 160 + 400

    a = AugConfig.from_dict({"snr_noise": [5, 10], "speed_perturb": True}, "conf/x.yaml: augmentation")
    assert a.snr_noise == (5, 10) and a.speed_perturb and a.aug_prob == 0.6
    np.testing.assert_allclose(a.weights, [0.35, 0.25, 0.25, 0.15])
    with pytest.raises(DataError, match=r"conf/x.yaml: augmentation: unknown option\(s\) snr_nosie"):
        AugConfig.from_dict({"snr_nosie": [5, 10]}, "conf/x.yaml: augmentation")
    with pytest.raises(DataError, match="features: unknown option.*chunk"):
        FeatureConfig.from_dict({"chunk": 100})
    with pytest.raises(DataError, match="snr_babble must be a range"):
        AugConfig.from_dict({"snr_babble": [20, 13]})
    assert FeatureConfig.from_dict({"use_vad": False}).use_vad is False
    off = AugConfig.off()
    assert off.aug_prob == 0 and not off.speed_perturb and not off.spec_aug


def test_read_training_list(tiny: Path, tmp_path: Path) -> None:
    tl = read_training_list(tiny)
    assert len(tl) == 12 and tl.speakers == [f"spk{s}" for s in range(NSPK)]
    assert tl.labels.dtype == np.int64
    assert [int(lab) for lab in tl.labels] == [int(u[3]) for u in tl.utts]
    assert tl.utts == sorted(tl.utts) and tl.vads is not None and tl.wav_where[0] == f"{tiny}/wav.scp:1"
    sub = tl.subset([5, 0])
    assert sub.utts == [tl.utts[5], tl.utts[0]] and sub.num_speakers == NSPK

    # pseudo labels (another utt2spk): labels follow the sorted pseudo-speaker names
    pl = tmp_path / "pl_utt2spk"
    pl.write_text("".join(f"{u} c{9 - int(u[3])}\n" for u in tl.utts))
    tp = read_training_list(tiny, pl)
    assert tp.speakers == ["c6", "c7", "c8", "c9"]
    assert [int(lab) for lab in tp.labels] == [3 - int(u[3]) for u in tp.utts]

    # a missing vad entry is found before anything is read, naming vad.scp and the utt2spk line
    bad = tmp_path / "bad"
    bad.mkdir()
    for f in ("wav.scp", "utt2spk"):
        (bad / f).write_text((tiny / f).read_text())
    lines = (tiny / "vad.scp").read_text().splitlines()
    (bad / "vad.scp").write_text("\n".join(ln for ln in lines if not ln.startswith("spk1-u2 ")) + "\n")
    with pytest.raises(DataError, match=r"bad/vad.scp: no entry for utterance 'spk1-u2' \(.*utt2spk:6\)"):
        read_training_list(bad)
    assert len(read_training_list(bad, use_vad=False)) == 12
    (bad / "wav.scp").write_text("spk0-u0 /x.wav\n")
    with pytest.raises(DataError, match=r"bad/wav.scp: no entry for utterance 'spk0-u1' \(.*utt2spk:2\)"):
        read_training_list(bad, use_vad=False)


def test_voiced_samples_against_loop() -> None:
    rng = np.random.default_rng(0)
    for n in (16000, 16079, 16080, 16170):
        x = rng.standard_normal(n)
        t = (n + 80) // 160
        for tt in (t - 1, t, t + 1):
            vad = (rng.random(tt) < 0.5).astype(np.float32)
            ref = [x[k] for k in range(n) if vad[min(k // 160, tt - 1)] != 0]
            np.testing.assert_array_equal(voiced_samples(x, vad, RATE), ref)
    with pytest.raises(DataError, match="vad.scp:3: VAD has 90 frames but the audio has 16000 samples"):
        voiced_samples(np.zeros(16000), np.ones(90), RATE, "vad.scp:3")


def test_chunk_length_short_and_long(tiny: Path) -> None:
    tl = read_training_list(tiny)
    ds = ChunkDataset(tl, _feat(dither=0.0), AugConfig.off(), seed=3)
    L = 32240
    for i, utt in enumerate(tl.utts):
        feats, label = ds[i]
        assert feats.shape == (200, 40) and feats.dtype == torch.float32 and label == tl.labels[i]
        y, _, info = ds.chunk(i)
        assert y.size == L and info["type"] is None
        x = _wav(tiny, utt)
        if utt == SHORT_UTT:
            np.testing.assert_array_equal(y, np.tile(x, 3)[:L])       # tiled from its start
        elif utt != SILENT_UTT:
            assert x.size > L and _is_slice(y, x)
        # the features are the MFCC of exactly that chunk (dither 0)
        np.testing.assert_array_equal(feats.numpy(), compute_mfcc(y.astype(np.float32), RATE, ds._mfcc))
    # uniform start: over epochs the start of a 4-s utterance's chunk varies
    i = tl.utts.index("spk3-u1")
    x = _wav(tiny, "spk3-u1")
    starts = set()
    for e in range(8):
        ds.set_epoch(e)
        starts.add(_slice_start(ds.chunk(i)[0], x))
    assert None not in starts and len(starts) == 8 and max(starts) <= x.size - L


def test_voiced_only(tiny: Path) -> None:
    tl = read_training_list(tiny)
    i = tl.utts.index(SILENT_UTT)
    x = _wav(tiny, SILENT_UTT)
    ds = ChunkDataset(tl, _feat(dither=0.0), AugConfig.off(), seed=0)
    np.testing.assert_array_equal(ds._voiced(i), x[24000:])
    raw = ChunkDataset(read_training_list(tiny, use_vad=False), _feat(use_vad=False, dither=0.0),
                       AugConfig.off(), seed=0)
    zeros_vad, zeros_raw, c0_vad, c0_raw = 0, 0, [], []
    for e in range(30):
        ds.set_epoch(e)
        raw.set_epoch(e)
        zeros_vad += int(np.sum(ds.chunk(i)[0] == 0))
        zeros_raw += int(np.sum(raw.chunk(i)[0] == 0))
        c0_vad.append(float(ds[i][0][:, 0].min()))
        c0_raw.append(float(raw[i][0][:, 0].min()))
    assert zeros_vad == 0                       # never a silent sample
    assert zeros_raw > 100000                   # without VAD most chunks contain the silent half
    # frames of digital silence hit the energy floor: c0 far below any voiced frame
    assert min(c0_vad) > 50 and min(c0_raw) < 0, (min(c0_vad), min(c0_raw))


def test_determinism_and_epochs(tiny: Path) -> None:
    tl = read_training_list(tiny)
    aug = AugConfig(aug_prob=0.9, speed_perturb=True)
    a = ChunkDataset(tl, _feat(), aug, seed=11)
    b = ChunkDataset(tl, _feat(), aug, seed=11, cache_audio=True)
    c = ChunkDataset(tl, _feat(), aug, seed=12)
    types = set()
    for i in range(len(tl)):
        fa, la = a[i]
        fb, lb = b[i]
        fb2, _ = b[i]                            # from the cache: still the same
        assert la == lb and torch.equal(fa, fb) and torch.equal(fb, fb2)
        assert not torch.equal(fa, c[i][0])
        types.add(a.chunk(i)[2]["type"])
    assert len(types) >= 3
    e0 = [a[i][0] for i in range(len(tl))]
    a.set_epoch(1)
    assert a.epoch == 1
    assert all(not torch.equal(e0[i], a[i][0]) for i in range(len(tl)))
    a.set_epoch(0)
    assert all(torch.equal(e0[i], a[i][0]) for i in range(len(tl)))


def test_dataloader_workers(tiny: Path) -> None:
    tl = read_training_list(tiny)
    ds = ChunkDataset(tl, _feat(), AugConfig(speed_perturb=True), seed=5)

    def run(workers: int) -> list[list[torch.Tensor]]:
        dl = torch.utils.data.DataLoader(ds, batch_size=4, shuffle=False, num_workers=workers,
                                         worker_init_fn=worker_init_fn, persistent_workers=workers > 0)
        out = []
        for e in range(2):
            ds.set_epoch(e)                      # reaches the persistent workers (shared memory)
            out.append([torch.cat([f.flatten(), lab.double()]) for f, lab in dl])
        return out

    r0, r2 = run(0), run(2)
    for e in range(2):
        assert len(r0[e]) == 3
        assert all(torch.equal(p, q) for p, q in zip(r0[e], r2[e], strict=True))
    assert not any(torch.equal(p, q) for p, q in zip(r0[0], r0[1], strict=True))


def _peak_hz(y: np.ndarray) -> float:
    spec = np.abs(np.fft.rfft(y * np.hanning(y.size)))
    return float(np.argmax(spec) * RATE / y.size)


def test_speed_perturbation_classes(tiny: Path) -> None:
    tl = read_training_list(tiny)
    ds = ChunkDataset(tl, _feat(dither=0.0), AugConfig(aug_prob=0.0, speed_perturb=True), seed=1)
    assert ds.num_classes == NSPK and ds.num_classes_total == 3 * NSPK
    assert ChunkDataset(tl, _feat(), AugConfig.off()).num_classes_total == NSPK
    counts = np.zeros(3, dtype=int)
    tone = tl.utts.index(TONE_UTT)
    pitches: dict[float, list[float]] = {0.9: [], 1.0: [], 1.1: []}
    for e in range(6):
        ds.set_epoch(e)
        for i in range(len(tl)):
            y, label, info = ds.chunk(i)
            idx = [1.0, 0.9, 1.1].index(info["speed"])
            counts[idx] += 1
            assert label == tl.labels[i] + NSPK * idx and 0 <= label < 3 * NSPK
            assert y.size == 32240
            if i == tone:
                pitches[info["speed"]].append(_peak_hz(y))
            elif tl.utts[i] not in (SHORT_UTT, SILENT_UTT):
                assert _is_slice(y, _wav(tiny, tl.utts[i])) == (idx == 0)
            if e == 0:
                assert ds[i][1] == label and ds[i][0].shape == (200, 40)
    assert counts.sum() == 72 and counts.min() >= 14, counts        # 1/3 each: 24 expected
    # speed F scales the pitch by F: the 500-Hz tone becomes 450 / 500 / 550 Hz (FFT bin 0.5 Hz)
    for f, ps in pitches.items():
        for p in ps:
            assert abs(p - 500.0 * f) < 1.0, (f, p)


def test_corruption_snr_and_sources(tiny: Path) -> None:
    tl = read_training_list(tiny)
    only = {k: 0.0 for k in ("reverb_weight", "noise_weight", "babble_weight", "reverb_noise_weight")}
    for kind, lo, hi in (("noise", 0.0, 15.0), ("babble", 13.0, 20.0)):
        aug = AugConfig(aug_prob=1.0, **{**only, f"{kind}_weight": 1.0})
        ds = ChunkDataset(tl, _feat(), aug, seed=2)
        clean = ChunkDataset(tl, _feat(), AugConfig.off(), seed=2)
        snrs = []
        for e in range(3):
            ds.set_epoch(e)
            clean.set_epoch(e)
            for i in range(len(tl)):
                y, _, info = ds.chunk(i)
                assert info["type"] == kind
                x = clean.chunk(i)[0]              # same draws up to the corruption: the same chunk
                n = y - x
                if np.max(np.abs(y)) < 32767:      # no down-scaling, so y - x is the scaled noise
                    measured = 10 * np.log10(augment.power(x) / augment.power(n))
                    assert abs(measured - info["snr"]) < 0.01, (measured, info["snr"])
                    snrs.append(measured)
                assert lo <= info["snr"] <= hi
                if kind == "babble":
                    others = info["babble_utts"]
                    assert 3 <= len(others) <= 7 and len(set(others)) == len(others)
                    assert all(tl.labels[j] != tl.labels[i] for j in others)
        assert len(snrs) >= 30 and max(snrs) - min(snrs) > 3
    # reverb: same length and (normalize=power) same power as the clean chunk
    ds = ChunkDataset(tl, _feat(), AugConfig(aug_prob=1.0, **{**only, "reverb_weight": 1.0}), seed=2)
    clean = ChunkDataset(tl, _feat(), AugConfig.off(), seed=2)
    for i in range(3):
        y, _, info = ds.chunk(i)
        x = clean.chunk(i)[0]
        assert info["type"] == "reverb" and 0.2 <= info["rt60"] <= 1.0
        assert y.size == x.size and abs(augment.power(y) / augment.power(x) - 1) < 1e-9
        assert np.corrcoef(x, y)[0, 1] < 0.99


def test_corruption_odds() -> None:
    cfg = AugConfig()
    rng = np.random.default_rng(0)
    x = np.random.default_rng(1).standard_normal(800) * 1000
    kinds = []
    for _ in range(3000):
        kinds.append(corrupt(x, RATE, dataclasses.replace(cfg, rt60=(0.01, 0.02)), rng,
                             lambda k, n: [x[::-1][:n]] * k)[1]["type"])
    frac = np.mean([k is not None for k in kinds])
    assert abs(frac - 0.6) < 0.03, frac            # sd 0.009
    got = np.array([kinds.count(k) for k in CORRUPTIONS]) / sum(k is not None for k in kinds)
    np.testing.assert_allclose(got, [0.35, 0.25, 0.25, 0.15], atol=0.035)


def test_spec_augment() -> None:
    cfg = AugConfig(spec_aug=True)
    b, t, f = 3000, 200, 40
    x = torch.ones(b, t, f)
    y = spec_augment(x, cfg, torch.Generator().manual_seed(0))
    assert torch.equal(x, torch.ones(b, t, f))     # input untouched
    zero = y == 0
    rows = zero.all(dim=2)                         # fully masked frames (B, T)
    cols = zero.all(dim=1)                         # fully masked dims (B, F)
    # every zero is in a masked frame or a masked dim
    assert torch.equal(zero, rows[:, :, None] | cols[:, None, :])
    masked = rows.any(dim=1)
    assert torch.equal(masked, cols.any(dim=1))
    assert abs(masked.float().mean().item() - 0.6) < 0.03
    wt = rows.sum(dim=1)[masked]
    wf = cols.sum(dim=1)[masked]
    assert set(wt.tolist()) == set(range(1, 11)) and set(wf.tolist()) == set(range(1, 9))
    for m, w in ((rows[masked], wt), (cols[masked], wf)):   # one contiguous band per sample
        idx = torch.arange(m.shape[1]).expand_as(m)
        first = torch.where(m, idx, m.shape[1]).min(dim=1).values
        last = torch.where(m, idx, -1).max(dim=1).values
        assert torch.equal(last - first + 1, w)
    assert len({tuple(r.nonzero().flatten().tolist()) for r in rows[masked][:50]}) > 40  # per sample
    assert spec_augment(x, AugConfig(), torch.Generator()) is x                          # off


def test_cmn() -> None:
    x = torch.randn(3, 50, 4, dtype=torch.float64) + 7
    ref = x.numpy() - x.numpy().mean(axis=1, keepdims=True)
    np.testing.assert_allclose(cmn(x).numpy(), ref, atol=1e-12)
    assert cmn(x).mean(dim=1).abs().max() < 1e-12


def test_utterance_features(tiny: Path) -> None:
    tl = read_training_list(tiny)
    cfg = read_mfcc_config(MFCC_CONF)
    cfg0 = dataclasses.replace(cfg, dither=0.0)
    i = tl.utts.index(SILENT_UTT)
    got = utterance_features(tl.wavs[i], tl.vads[i], _feat(), SILENT_UTT, tl.wav_where[i])
    ref = compute_mfcc(_wav(tiny, SILENT_UTT)[24000:].astype(np.float32), RATE, cfg0)
    assert got.shape == (148, 40)              # 1 + (24000 - 400) // 160
    np.testing.assert_array_equal(got, ref)
    nov = utterance_features(tl.wavs[i], None, _feat(use_vad=False), SILENT_UTT)
    assert nov.shape == (298, 40)
    with pytest.raises(DataError, match="no VAD entry"):
        utterance_features(tl.wavs[i], None, _feat(), SILENT_UTT)


def test_utterance_features_short(tmp_path: Path) -> None:
    x = _speechlike(4000, 150.0, np.random.default_rng(3))      # 0.25 s: 23 frames
    sf.write(tmp_path / "s.wav", x.astype(np.int16), RATE, subtype="PCM_16")
    got = utterance_features(str(tmp_path / "s.wav"), None, _feat(use_vad=False), "s")
    n = 49 * 160 + 400
    ref = compute_mfcc(x[np.arange(n) % x.size].astype(np.float32), RATE,
                       dataclasses.replace(read_mfcc_config(MFCC_CONF), dither=0.0))
    assert got.shape == (50, 40)
    np.testing.assert_array_equal(got, ref)


def test_worker_init_fn() -> None:
    before = torch.get_num_threads()
    try:
        worker_init_fn(0)
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)


def test_fbank_front_end(tiny: Path) -> None:
    """kind=fbank: 80 log mel energies per frame (conf/fbank_embed.conf); and the filterbank path is the
    MFCC's own: the orthonormal DCT-II of 40 log mel energies equals the 40 unliftered MFCC."""
    from scipy.fft import dct
    from sslsv.features.mfcc import compute_fbank

    feat = FeatureConfig.from_dict({"mfcc_config": str(ROOT / "conf/fbank_embed.conf"), "kind": "fbank"})
    assert feat.feat_dim == 80
    ds = ChunkDataset(read_training_list(tiny), feat, AugConfig.off(), seed=0)
    x, _ = ds[0]
    assert x.shape == (200, 80) and torch.isfinite(x).all()
    cfg = dataclasses.replace(read_mfcc_config(ROOT / "conf/mfcc_embed.conf"), dither=0.0,
                              cepstral_lifter=0.0)
    wav = _wav(tiny, read_training_list(tiny).utts[0])
    fb = compute_fbank(wav, 16000, cfg, "u")
    mf = compute_mfcc(wav, 16000, cfg, "u")
    assert fb.shape == mf.shape == (fb.shape[0], 40) and fb.shape[0] > 50
    np.testing.assert_allclose(dct(fb.astype(np.float64), type=2, norm="ortho", axis=1), mf, atol=2e-4)
    with pytest.raises(DataError, match="kind must be mfcc or fbank"):
        FeatureConfig.from_dict({"kind": "plp"}).check()


def test_device_compute_matches_worker_features(tiny: Path) -> None:
    """features.compute=device: the dataset yields the dithered waveform chunk, and the batched torch
    front end turns it into the features the workers would have made (same draw, same dither)."""
    from sslsv.embed.data import device_frontend

    items = read_training_list(tiny)
    worker = ChunkDataset(items, _feat(), AugConfig(), seed=3)
    device = ChunkDataset(items, _feat(compute="device"), AugConfig(), seed=3)
    for ds in (worker, device):
        ds.set_epoch(2)
    front = device_frontend(device.feat_cfg, torch.device("cpu"))
    assert device_frontend(worker.feat_cfg, torch.device("cpu")) is None
    waves = torch.stack([device[i][0] for i in range(len(items))])
    assert waves.shape == (len(items), 32240)
    feats = torch.stack([worker[i][0] for i in range(len(items))])
    got = front(waves)
    assert got.shape == feats.shape == (len(items), 200, 40)
    # float32 rounding in the log domain (values span about +-100): 4.2e-3 at most, 1e-4 on average here
    diff = (got - feats).abs()
    assert float(diff.max()) < 1e-2 and float(diff.mean()) < 5e-4, (float(diff.max()), float(diff.mean()))
    assert [device[i][1] for i in range(len(items))] == [worker[i][1] for i in range(len(items))]
