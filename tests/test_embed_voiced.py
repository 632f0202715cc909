"""Window reads of voiced samples (sslsv.embed.voiced): the runs agree with voiced_samples, a window read
from WAV and FLAC equals the same slice of the whole decoded utterance, babble segments equal
augment.fit_length's, pipes and resampled files fall back to whole decodes, and a training item reads
far fewer samples than the utterance holds while staying equal to the in-memory path."""

from __future__ import annotations

from pathlib import Path

import kaldiio
import numpy as np
import pytest
import soundfile as sf
import torch
from sslsv import augment
from sslsv.embed.data import AugConfig, ChunkDataset, FeatureConfig, read_training_list
from sslsv.embed.voiced import (
    ArraySource,
    FileWindows,
    cyclic_window,
    fit_window,
    load_voiced,
    open_voiced,
    voiced_runs,
    voiced_samples,
)
from sslsv.features.kaldi_options import read_mfcc_config

ROOT = Path(__file__).resolve().parents[1]
RATE = 16000
CFG = read_mfcc_config(ROOT / "conf/mfcc_embed.conf")


def _vad(n: int, rng: np.random.Generator, frames: int | None = None) -> np.ndarray:
    """A VAD of bursts: voiced and unvoiced stretches of 1-60 frames."""
    t = (n + 80) // 160 if frames is None else frames
    v = np.zeros(t, dtype=np.float32)
    pos, on = 0, bool(rng.random() < 0.5)
    while pos < t:
        k = int(rng.integers(1, 61))
        v[pos:pos + k] = on
        pos, on = pos + k, not on
    return v


def test_runs_select_what_voiced_samples_selects() -> None:
    rng = np.random.default_rng(0)
    for n in (16000, 16079, 16080, 16170, 33333):
        x = np.arange(n)
        t = (n + 80) // 160
        for frames in (t - 2, t, t + 2):
            for _ in range(5):
                v = _vad(n, rng, frames)
                a, b = voiced_runs(v, n, RATE)
                got = np.concatenate([x[p:q] for p, q in zip(a, b, strict=True)]) if a.size else x[:0]
                np.testing.assert_array_equal(got, voiced_samples(x, v, RATE))
                assert np.all(b > a) and np.all(a[1:] > b[:-1])      # disjoint, non-empty, not touching
    a, b = voiced_runs(np.zeros(100), 16000, RATE)
    assert a.size == 0 and b.size == 0


@pytest.fixture(scope="module")
def utts(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[str, str, np.ndarray]]:
    """One 9-s utterance with a bursty VAD as WAV and as FLAC: name → (wav.scp entry, vad entry, audio)."""
    d = tmp_path_factory.mktemp("voiced")
    rng = np.random.default_rng(1)
    n = 9 * RATE + 37
    x = np.round(rng.standard_normal(n) * 3000).astype(np.int16)
    vad = _vad(n, rng)
    kaldiio.save_ark(str(d / "vad.ark"), {"u": vad}, scp=str(d / "vad.scp"))
    vad_entry = (d / "vad.scp").read_text().split()[1]
    out = {}
    for fmt in ("wav", "flac"):
        sf.write(d / f"u.{fmt}", x, RATE, subtype="PCM_16")
        out[fmt] = (str(d / f"u.{fmt}"), vad_entry, x)
    sf.write(d / "u8k.wav", x[::2], RATE // 2, subtype="PCM_16")
    out["8k"] = (str(d / "u8k.wav"), None, x[::2])
    return out


@pytest.mark.parametrize("fmt", ["wav", "flac"])
def test_window_reads_equal_the_whole_decode(utts, fmt: str) -> None:
    entry, vad_entry, _ = utts[fmt]
    whole = load_voiced(entry, vad_entry, CFG)
    src = open_voiced(entry, vad_entry, CFG)
    assert isinstance(src, FileWindows) and src.size == whole.size
    assert 0.2 * len(utts[fmt][2]) < src.size < 0.8 * len(utts[fmt][2])
    rng = np.random.default_rng(2)
    for n in (1, 160, 32240, 50000, src.size):
        for _ in range(20):
            s = int(rng.integers(0, src.size - n + 1))
            got = src.read(s, n)
            assert got.dtype == np.float32
            np.testing.assert_array_equal(got, whole[s:s + n])
    np.testing.assert_array_equal(src.all(), whole)
    with pytest.raises(IndexError):
        src.read(src.size - 10, 11)
    # the random helpers draw what the in-memory helpers draw
    for k in range(30):
        for n in (32240, src.size - 5, src.size + 7000):
            r1, r2 = np.random.default_rng(k), np.random.default_rng(k)
            np.testing.assert_array_equal(fit_window(src, n, r1), fit_window(ArraySource(whole), n, r2))
            r1, r2 = np.random.default_rng(k), np.random.default_rng(k)
            np.testing.assert_array_equal(cyclic_window(src, n, r1), augment.fit_length(whole, n, r2))
            assert r1.random() == r2.random()                         # same number of draws


def test_pipes_and_other_rates_are_decoded_whole(utts) -> None:
    entry, vad_entry, _ = utts["flac"]
    src = open_voiced(f"sox {entry} -t wav - |", vad_entry, CFG)
    assert isinstance(src, ArraySource)
    np.testing.assert_array_equal(src.all(), load_voiced(entry, vad_entry, CFG))
    entry8k = utts["8k"][0]
    with pytest.raises(Exception, match="sample rate 8000 Hz differs"):
        open_voiced(entry8k, None, CFG, "wav.scp:3")
    up = CFG.__class__(**{**CFG.__dict__, "allow_upsample": True})
    src = open_voiced(entry8k, None, up)
    assert isinstance(src, ArraySource) and src.size == 2 * len(utts["8k"][2])


def test_a_training_item_reads_a_window(utts, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Items of long FLAC utterances, with babble from the others: equal to the in-memory path, and each
    item reads a few chunks' worth of samples, not whole utterances."""
    rng = np.random.default_rng(3)
    wav, u2s, vads, total = [], [], {}, 0
    for s in range(4):
        for u in range(2):
            utt, n = f"s{s}-u{u}", int(RATE * rng.uniform(12, 20))
            sf.write(tmp_path / f"{utt}.flac", np.round(rng.standard_normal(n) * 2000).astype(np.int16),
                     RATE, subtype="PCM_16")
            wav.append(f"{utt} {tmp_path / f'{utt}.flac'}")
            u2s.append(f"{utt} s{s}")
            vads[utt] = _vad(n, rng)
            total += n
    (tmp_path / "wav.scp").write_text("\n".join(wav) + "\n")
    (tmp_path / "utt2spk").write_text("\n".join(u2s) + "\n")
    kaldiio.save_ark(str(tmp_path / "vad.ark"), vads, scp=str(tmp_path / "vad.scp"))
    tl = read_training_list(tmp_path)
    feat = FeatureConfig(mfcc_config=str(ROOT / "conf/mfcc_embed.conf"))
    aug = AugConfig(aug_prob=1.0, reverb_weight=0, noise_weight=0, reverb_noise_weight=0, babble_weight=1,
                    speed_perturb=True)
    spans: list[int] = []
    read_span = FileWindows._read_span
    monkeypatch.setattr(FileWindows, "_read_span", lambda self, a, b: (spans.append(b - a),
                                                                        read_span(self, a, b))[1])
    windowed = ChunkDataset(tl, feat, aug, seed=4)
    cached = ChunkDataset(tl, feat, aug, seed=4, cache_audio=True)
    lengths = {i: sf.info(tl.wavs[i]).frames for i in range(len(tl))}
    for e in range(3):
        windowed.set_epoch(e)
        cached.set_epoch(e)
        for i in range(len(tl)):
            spans.clear()
            a = windowed[i]
            read = sum(spans)
            b = cached[i]
            assert a[1] == b[1] and torch.equal(a[0], b[0])
            info = windowed.chunk(i)[2]
            assert info["type"] == "babble" and 3 <= len(info["babble_utts"]) <= 7
            # the chunk plus one segment per babble source (silence inside each span included): well
            # under half of what decoding those utterances whole reads
            touched = lengths[i] + sum(lengths[j] for j in info["babble_utts"])
            assert read < 0.5 * touched, (read, touched)
