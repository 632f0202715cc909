"""Stage 2: augmentation functions (SNR, RT60, alignment, speed, determinism) and the data dir step
(valid sorted output, nj independence, kill/resume, MFCC on the result)."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from sslsv.augment import (
    AugOptions,
    add_noise,
    augment_utterance,
    babble,
    fit_length,
    job_utts,
    make_noise,
    pick_babble,
    reverberate,
    schroeder_rt60,
    speed_perturb,
    synth_rir,
    utt_rng,
)
from sslsv.tables import c_sorted, read_map, read_scp

RATE = 16000


def _speechlike(n: int, rng: np.random.Generator, amp: float = 3000.0) -> np.ndarray:
    """Harmonics with a syllable-rate envelope plus a little noise: a stand-in for speech."""
    t = np.arange(n) / RATE
    f0 = 120.0 + 20.0 * np.sin(2 * np.pi * 0.7 * t)
    phase = 2 * np.pi * np.cumsum(f0) / RATE
    x = sum(np.sin(k * phase) / k for k in range(1, 8))
    env = 0.5 + 0.5 * np.sin(2 * np.pi * 4.0 * t) ** 2
    return amp * env * x + 30.0 * rng.standard_normal(n)


def _snr(x: np.ndarray, n: np.ndarray) -> float:
    return 10.0 * np.log10(np.mean(x ** 2) / np.mean(n ** 2))


# ----------------------------------------------------------------------------------------------------
# Library


@pytest.mark.parametrize("kind", ["white", "pink", "brown"])
@pytest.mark.parametrize("snr", [0.0, 7.3, 15.0])
def test_add_noise_snr(kind: str, snr: float) -> None:
    rng = np.random.default_rng(1)
    x = _speechlike(RATE * 2, rng)
    noise = make_noise(kind, RATE // 3, rng, band=(200.0, 3000.0), mod=(2.0, 0.5))  # shorter: repeated
    y = add_noise(x, noise, snr, rng)
    assert y.shape == x.shape
    assert abs(_snr(x, y - x) - snr) < 0.1


def test_add_noise_no_clipping_keeps_snr() -> None:
    rng = np.random.default_rng(2)
    x = _speechlike(RATE, rng, amp=20000.0)
    noise = make_noise("white", RATE, rng)
    y = add_noise(x, noise, 0.0)                 # offset 0: the noise component is fit_length(noise, n)
    assert np.max(np.abs(y)) <= 32767.0 + 1e-6
    assert np.max(np.abs(x + np.sqrt(np.mean(x ** 2)) * noise)) > 32767  # it would have clipped
    # y = a·x + b·n: recover the two gains by least squares; their ratio is the requested SNR
    n = fit_length(noise, x.size)
    (a, b), *_ = np.linalg.lstsq(np.stack([x, n], 1), y, rcond=None)
    assert np.allclose(y, a * x + b * n, atol=1e-6)
    assert a < 1.0
    assert abs(_snr(a * x, b * n)) < 0.1


def test_babble_snr_and_others_lengths() -> None:
    rng = np.random.default_rng(3)
    x = _speechlike(RATE * 2, rng)
    others = [_speechlike(m, rng, amp=a) for m, a in ((RATE // 2, 500.0), (RATE * 3, 8000.0),
                                                      (RATE * 2, 100.0), (RATE, 2000.0))]
    for snr in (13.0, 16.5, 20.0):
        y = babble(x, others, snr, np.random.default_rng(7))
        assert abs(_snr(x, y - x) - snr) < 0.1


def test_babble_components_have_equal_rms() -> None:
    # two "others" of very different level: the babble is their sum after RMS normalisation
    x = _speechlike(RATE, np.random.default_rng(4))
    o1 = np.sin(2 * np.pi * 300 * np.arange(RATE) / RATE) * 10.0
    o2 = np.sin(2 * np.pi * 1100 * np.arange(RATE) / RATE) * 9000.0
    y = babble(x, [o1, o2], 10.0, np.random.default_rng(0))
    spec = np.abs(np.fft.rfft(y - x))
    assert abs(spec[300] / spec[1100] - 1.0) < 0.01    # 1-s signal: bin k is k Hz


def test_make_noise_spectra() -> None:
    rng = np.random.default_rng(5)
    n = RATE * 4
    f = np.fft.rfftfreq(n, 1 / RATE)
    sel = (f > 50) & (f < 5000)
    for kind, beta in (("white", 0.0), ("pink", 1.0), ("brown", 2.0)):
        w = make_noise(kind, n, rng)
        assert abs(np.sqrt(np.mean(w ** 2)) - 1.0) < 1e-9
        psd = np.abs(np.fft.rfft(w)) ** 2
        slope = np.polyfit(np.log10(f[sel]), np.log10(psd[sel]), 1)[0]
        assert abs(slope + beta) < 0.1, (kind, slope)
    w = make_noise("white", n, rng, band=(500.0, 2000.0))
    psd = np.abs(np.fft.rfft(w)) ** 2
    inside = (f >= 500) & (f <= 2000)
    assert psd[~inside].sum() < 1e-12 * psd[inside].sum()


def test_schroeder_rt60_on_exact_decay() -> None:
    t = np.arange(int(1.5 * RATE)) / RATE
    h = np.exp(-3 * np.log(10) * t / 0.5)               # energy −60 dB at 0.5 s
    assert abs(schroeder_rt60(h, RATE) - 0.5) < 0.01


@pytest.mark.parametrize("rt60", [0.2, 0.35, 0.5, 0.8])
def test_synth_rir_rt60(rt60: float) -> None:
    for seed in range(5):
        rng = np.random.default_rng(seed)
        h = synth_rir(rt60, RATE, rng)
        d = int(np.argmax(np.abs(h)))
        assert h[d] == 1.0 and np.all(h[:d] == 0.0)
        measured = schroeder_rt60(h[d + 1:], RATE)     # the tail after the direct path
        assert abs(measured / rt60 - 1.0) < 0.15, (rt60, seed, measured)
        drr = 10 * np.log10(1.0 / np.sum(h[d + 1:] ** 2))
        assert -0.01 < drr  # the default DRR range is 0–10 dB (raised if the tail had to be lowered)


def test_reverberate_alignment_and_level() -> None:
    rng = np.random.default_rng(6)
    x = _speechlike(RATE, rng)
    h = synth_rir(0.4, RATE, rng, drr_db=5.0, predelay_s=0.004)
    d = int(np.argmax(h))
    assert d == 64
    # reference: slow direct convolution, shifted by the direct path
    ref = np.convolve(x, h)[d:d + x.size]
    y = reverberate(x, h, "none")
    assert y.shape == x.shape
    assert np.allclose(y, ref, atol=1e-6 * np.max(np.abs(ref)))
    # the direct sound is aligned with the input: with a white input (autocorrelation a delta) the
    # cross-correlation is the RIR around its peak, at lag 0
    w = 1000.0 * rng.standard_normal(RATE)
    yd = reverberate(w, h, "direct")
    lags = np.arange(-200, 201)
    xc = [np.dot(yd[max(k, 0):w.size + min(k, 0)], w[max(-k, 0):w.size - max(k, 0)]) for k in lags]
    assert lags[int(np.argmax(xc))] == 0
    # an RIR that is only a delayed direct path gives back the input, for every normalisation
    delta = np.zeros(100)
    delta[37] = 0.5
    assert np.allclose(reverberate(x, delta, "direct"), x)
    assert np.allclose(reverberate(x, delta, "power"), x)
    # Kaldi's normalisation: same power as the input
    yp = reverberate(x, h, "power")
    assert abs(np.mean(yp ** 2) / np.mean(x ** 2) - 1.0) < 1e-9


def test_speed_perturb_duration_and_pitch() -> None:
    n = RATE * 2
    x = 5000.0 * np.sin(2 * np.pi * 1000.0 * np.arange(n) / RATE)
    for f in (0.9, 1.1):
        y = speed_perturb(x, f, RATE)
        assert abs(y.size / (n / f) - 1.0) < 0.01
        spec = np.abs(np.fft.rfft(y * np.hanning(y.size)))
        peak_hz = np.argmax(spec) * RATE / y.size
        assert abs(peak_hz / (1000.0 * f) - 1.0) < 0.01
    assert np.array_equal(speed_perturb(x, 0.9, RATE), speed_perturb(x, 0.9, RATE))


def test_determinism_and_independence_of_order() -> None:
    utts = [f"u{i:02d}" for i in range(30)]
    opts = AugOptions(seed=3)
    sig = {u: _speechlike(RATE // 2 + 100 * i, np.random.default_rng(i)) for i, u in enumerate(utts)}
    for aug in ("noise", "babble", "reverb"):
        a, da = augment_utterance("u05", sig["u05"], RATE, aug, opts, utts, sig.__getitem__)
        b, db = augment_utterance("u05", sig["u05"], RATE, aug, opts, utts, sig.__getitem__)
        assert np.array_equal(a, b) and da == db
        c, _ = augment_utterance("u05", sig["u05"], RATE, aug, AugOptions(seed=4), utts, sig.__getitem__)
        assert not np.array_equal(a, c)
    assert utt_rng(0, "a", "noise").random() != utt_rng(0, "b", "noise").random()
    assert utt_rng(0, "a", "noise").random() != utt_rng(0, "a", "reverb").random()
    # job partition: contiguous, complete, sizes differ by at most one
    for nj in (1, 2, 3, 7, 30):
        parts = [job_utts(utts, j, nj) for j in range(1, nj + 1)]
        assert sum(parts, []) == utts
        assert max(map(len, parts)) - min(map(len, parts)) <= 1


def test_pick_babble_never_self() -> None:
    utts = [f"u{i}" for i in range(8)]
    for i in range(200):
        rng = np.random.default_rng(i)
        utt = utts[i % len(utts)]
        got = pick_babble(utt, utts, (3, 7), rng)
        assert utt not in got and 3 <= len(got) <= 7 and len(set(got)) == len(got)
    assert pick_babble("u0", ["u0", "u1"], (3, 7), np.random.default_rng(0)) == ["u1"]


# ----------------------------------------------------------------------------------------------------
# The step


def _run(args: list[str], env: dict[str, str], cwd: Path, check: bool = True) -> subprocess.CompletedProcess:
    p = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True)
    if check and p.returncode != 0:
        raise AssertionError(f"{args} failed ({p.returncode}):\n{p.stdout}\n{p.stderr}")
    return p


@pytest.fixture(scope="module")
def src20(tmp_path_factory, root: Path, recipe_env: dict[str, str], speech_data: Path) -> Path:
    src = speech_data
    d = tmp_path_factory.mktemp("aug") / "src20"
    _run(["utils/subset_data_dir.sh", "--seed", "1", str(src), "20", str(d)], recipe_env, root)
    return d


def _files(out: Path) -> dict[str, bytes]:
    """Audio bytes by utterance id, and the tables with the audio paths taken out."""
    res = {}
    for utt, path in read_scp(out / "wav.scp").items():
        res[utt] = Path(path).read_bytes()
    for t in ("utt2spk", "spk2utt", "utt2dur", "utt2uniq"):
        res[t] = (out / t).read_bytes()
    res["wav.scp"] = "\n".join(f"{u} {Path(p).name}" for u, p in read_scp(out / "wav.scp").items()).encode()
    return res


def _step(root: Path, env: dict[str, str], src: Path, out: Path, nj: int, *extra: str,
          check: bool = True) -> subprocess.CompletedProcess:
    return _run(["steps/augment_data_dir.sh", "--nj", str(nj), "--seed", "5", "--speed-factors", "0.9",
                 *extra, str(src), str(out)], env, root, check)


def test_step_end_to_end(src20: Path, root: Path, recipe_env: dict[str, str], tmp_path: Path) -> None:
    out2, out1 = tmp_path / "aug_nj2", tmp_path / "aug_nj1"
    p = _step(root, recipe_env, src20, out2, 2)
    assert "wrote 80 augmented utterances" in p.stdout
    _run(["utils/validate_data_dir.sh", "--no-feats", "--check-audio", str(out2)], recipe_env, root)

    src_spk = read_map(src20 / "utt2spk")
    src_dur = read_map(src20 / "utt2dur")
    u2s = read_map(out2 / "utt2spk")
    uniq = read_map(out2 / "utt2uniq")
    dur = read_map(out2 / "utt2dur")
    for t in ("wav.scp", "utt2spk", "utt2dur", "utt2uniq", "spk2utt"):
        keys = [line.split()[0] for line in (out2 / t).read_text().splitlines()]
        assert keys == c_sorted(keys), t
    want = {f"{u}-{a}" for u in src_spk for a in ("noise", "babble", "reverb")}
    want |= {f"sp0.9-{u}" for u in src_spk}
    assert set(u2s) == want
    for new, spk in u2s.items():
        src = uniq[new]
        if new.startswith("sp0.9-"):
            assert new == f"sp0.9-{src}" and spk == f"sp0.9-{src_spk[src]}"
            assert abs(float(dur[new]) / (float(src_dur[src]) / 0.9) - 1.0) < 0.01
        else:
            assert spk == src_spk[src] and new.startswith(src + "-")
            assert abs(float(dur[new]) - float(src_dur[src])) < 1e-3
        x, rate = sf.read(read_scp(out2 / "wav.scp")[new], dtype="int16")
        assert rate == 16000 and x.size > 0
    # babble never uses the utterance itself (the job logs name the sources)
    logs = "".join(p.read_text() for p in (out2 / "log").glob("augment.*.log"))
    lines = [ln for ln in logs.splitlines() if ": babble " in ln]
    assert len(lines) == 20
    for ln in lines:
        new, rest = ln.split(": babble ")
        assert uniq[new] not in rest.split()[0].split(",")

    # any number of jobs gives the same bytes
    _step(root, recipe_env, src20, out1, 1)
    assert _files(out1) == _files(out2)

    # an unchanged rerun is skipped; a changed option is not
    p = _step(root, recipe_env, src20, out2, 2)
    assert "up to date" in p.stdout

    # MFCC on the result
    _run(["steps/make_mfcc.sh", "--nj", "2", str(out2)], recipe_env, root)
    assert len(read_scp(out2 / "feats.scp")) == 80


def test_step_kill_resume(src20: Path, root: Path, recipe_env: dict[str, str], tmp_path: Path) -> None:
    ref, out = tmp_path / "ref", tmp_path / "killed"
    _step(root, recipe_env, src20, ref, 2, "--types", "reverb,babble")
    args = ["steps/augment_data_dir.sh", "--nj", "2", "--seed", "5", "--speed-factors", "0.9", "--types",
            "reverb,babble", str(src20), str(out)]
    proc = subprocess.Popen(args, cwd=root, env=recipe_env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and len(list(out.glob("audio/*/*.wav"))) < 8:
        time.sleep(0.02)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not (out / "wav.scp").exists()
    # the state of a job killed while writing: a leftover temporary
    (out / "audio/reverb/.x.wav.abc.tmp").write_bytes(b"junk")
    # one finished job survives a kill untouched; make job 1 finished by running it alone
    _run(["augment_data_dir.py", "--types", "reverb,babble", "--speed-factors", "0.9", "--seed", "5",
          "--job", "1", "--nj", "2", "--done-stamp", str(out / "log/augment.1.done"),
          str(src20 / "wav.scp"), str(src20 / "utt2spk"), str((out / "audio").resolve()),
          str(out / "log/augment.1")], recipe_env, root)
    job1 = [out / "log/augment.1.wav.scp", out / "log/augment.1.done"]
    job1 += [Path(v) for v in read_scp(out / "log/augment.1.wav.scp").values()]
    before = {p: p.stat().st_mtime_ns for p in job1}
    p = _step(root, recipe_env, src20, out, 2, "--types", "reverb,babble")
    assert "wrote 60 augmented utterances" in p.stdout
    assert "up to date" in (out / "log/augment.1.log").read_text()
    assert before == {p: p.stat().st_mtime_ns for p in before}
    assert not list(out.glob("audio/*/.*.tmp"))
    assert _files(out) == _files(ref)
    shutil.rmtree(out / "audio")


def test_step_rejects_bad_options(src20: Path, root: Path, recipe_env: dict[str, str],
                                  tmp_path: Path) -> None:
    for bad in (["--types", "music"], ["--snr-noise", "15:0"], ["--speed-factors", "1.0"], ["--rt60", "x"]):
        p = _step(root, recipe_env, src20, tmp_path / "bad", 1, *bad, check=False)
        assert p.returncode != 0
        assert not (tmp_path / "bad/wav.scp").exists()
