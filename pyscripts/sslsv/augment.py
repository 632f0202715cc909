"""Waveform augmentation (stage 2): additive coloured noise, babble, reverberation with synthetic room
impulse responses and speed perturbation, plus the builder of an augmented Kaldi data dir.

Everything works on float arrays on Kaldi's int16 scale (±32768, what :func:`sslsv.audio.read_audio`
returns) and is deterministic given an ``np.random.Generator``; the embedding-network stage reuses these
functions on the fly. No MUSAN or RIR downloads are needed.

Choices (documented here once):

* **SNR** is ``10·log10(P_x / P_n)`` with ``P`` the mean square over the whole utterance, as Kaldi's
  ``wav-reverberate`` computes it for additive signals. A noise shorter than the speech is repeated
  cyclically (as ``wav-reverberate`` does), a longer one is cut at a random offset.
* **Noise** is synthesised in numpy (white, pink or brown: white Gaussian noise whose spectrum is shaped
  by ``f^(-β/2)``, β = 0, 1, 2 — the spectra of sox's ``synth whitenoise|pinknoise|brownnoise``),
  optionally band-limited to a random band and/or amplitude-modulated. numpy rather than sox because sox's
  generator cannot be seeded (``-R`` gives one fixed sequence), and each copy must be reproducible from
  the seed and the utterance id.
* **Babble** sums 3–7 other *utterances* chosen at random among all utterances of the data dir except
  the target itself — speaker labels are never read (the augmentation must stay unsupervised; this is
  what Kaldi does with MUSAN speech). Each is cut (or cyclically repeated) to the target's length at a
  random offset and scaled to unit RMS before summing; the sum is then scaled to the SNR.
* **RIR** (:func:`synth_rir`): a direct-path impulse of amplitude 1 after a short pre-delay, followed by
  exponentially decaying Gaussian noise whose *energy* decays 60 dB in RT60 seconds (amplitude envelope
  ``exp(-3·ln(10)·t/RT60)``), with a direct-to-reverberant energy ratio drawn in dB. The tail is kept
  below the direct path, so the direct path is the RIR's peak. Length ``1.25·RT60`` (tail < −75 dB).
* **Reverberation** (:func:`reverberate`) as Kaldi's ``wav-reverberate --shift-output=true`` (the
  default of ``reverberate_data_dir.py``): full convolution, then the output is shifted by the index of
  the RIR's peak (the direct path) and cut to the input length, so the direct sound stays time-aligned
  with the input. Level: ``normalize="power"`` (default; Kaldi's ``--normalize-output=true``: output
  power = input power) or ``normalize="direct"`` (divide by the direct-path tap, so the direct sound
  keeps the input level and the reverberant tail adds to it).
* **No clipping**: a result whose peak would exceed 32767 is scaled down as a whole (:func:`limit_peak`),
  so the SNR of a mix is unchanged; samples are rounded to int16 only when written.
* **Speed perturbation** (:func:`speed_perturb`) runs ``sox speed F rate R`` (pitch and tempo both
  change, the length becomes ``N/F``); like Kaldi's ``perturb_data_dir_speed.sh`` the copies get new
  speaker ids ``sp<F>-<spk>`` and utterance ids ``sp<F>-<utt>``.

Data dir builder (:func:`augment_job`, run by ``steps/augment_data_dir.sh``): copies ``<utt>-<type>``
for each type in ``noise``, ``babble``, ``reverb`` (same speaker as the source) and ``sp<F>-<utt>`` for
each speed factor, written as 16-bit WAV files under the audio dir; ``utt2uniq`` maps each copy back to
its source utterance (Kaldi's file for this). The random draws of a copy depend only on the seed, the
copy's type and the source utterance id, so the number of jobs does not change the output.
"""

from __future__ import annotations

import hashlib
import logging
import os
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import soundfile as sf
from scipy.signal import fftconvolve

from . import stamp
from .audio import read_audio
from .tables import DataError, atomic_path, c_sorted, read_map, read_scp, write_lines

log = logging.getLogger(__name__)

INT16_PEAK = 32767.0
NOISE_KINDS = ("white", "pink", "brown")
AUG_TYPES = ("noise", "babble", "reverb")
NOISE_BETA = {"white": 0.0, "pink": 1.0, "brown": 2.0}
DRR_DB = (0.0, 10.0)         # direct-to-reverberant ratio of a synthetic RIR, uniform (dB)


# ----------------------------------------------------------------------------------------------------
# Signal functions (pure numpy)


def power(x: np.ndarray) -> float:
    """Mean square of ``x`` (float64)."""
    x = np.asarray(x, dtype=np.float64)
    return float(np.mean(x * x)) if x.size else 0.0


def limit_peak(y: np.ndarray, peak: float = INT16_PEAK) -> np.ndarray:
    """Scale ``y`` down as a whole if its peak exceeds ``peak`` (no clipping; ratios are kept)."""
    m = float(np.max(np.abs(y))) if y.size else 0.0
    return y * (peak / m) if m > peak else y


def fit_length(noise: np.ndarray, n: int, rng: np.random.Generator | None = None) -> np.ndarray:
    """``noise`` cut or cyclically repeated to ``n`` samples, from a random offset if ``rng`` is given
    (else from 0)."""
    noise = np.asarray(noise, dtype=np.float64)
    if noise.size == 0:
        raise ValueError("empty noise signal")
    off = int(rng.integers(noise.size)) if rng is not None else 0
    idx = (off + np.arange(n)) % noise.size
    return noise[idx]


def add_noise(x: np.ndarray, noise: np.ndarray, snr_db: float, rng: np.random.Generator | None = None,
              peak: float = INT16_PEAK) -> np.ndarray:
    """Add ``noise`` to ``x`` at ``snr_db`` dB (``10·log10(P_x/P_noise)`` over the whole utterance).

    The noise is fitted to ``len(x)`` by :func:`fit_length` (random offset if ``rng``). Silent ``x``
    is returned unchanged (as float64); silent noise is an error. The result is scaled down as a whole
    if it would exceed ``peak`` (the SNR is kept). Returns float64.
    """
    x = np.asarray(x, dtype=np.float64)
    n = fit_length(noise, x.size, rng)
    pn = power(n)
    if pn <= 0.0:
        raise ValueError("noise signal is silent")
    px = power(x)
    if px <= 0.0:
        return x.copy()
    scale = np.sqrt(px / (pn * 10.0 ** (snr_db / 10.0)))
    return limit_peak(x + scale * n, peak)


def make_noise(kind: str, n: int, rng: np.random.Generator, rate: int = 16000,
               band: tuple[float, float] | None = None, mod: tuple[float, float] | None = None) -> np.ndarray:
    """Coloured Gaussian noise of ``n`` samples with unit RMS (float64).

    ``kind``: ``white``, ``pink`` (power ∝ 1/f) or ``brown`` (∝ 1/f²), made by shaping the spectrum of
    white noise by ``f^(-β/2)``. ``band=(lo, hi)`` in Hz keeps only that band; ``mod=(freq_hz, depth)``
    multiplies by ``1 + depth·sin(2π·freq·t + φ)`` with a random phase (a slowly pulsing noise).
    """
    if kind not in NOISE_BETA:
        raise ValueError(f"unknown noise kind {kind!r}; expected one of {', '.join(NOISE_KINDS)}")
    if n <= 0:
        raise ValueError(f"noise length must be positive, got {n}")
    w = rng.standard_normal(n)
    beta = NOISE_BETA[kind]
    if beta or band is not None:
        spec = np.fft.rfft(w)
        f = np.fft.rfftfreq(n, 1.0 / rate)
        gain = np.ones_like(f)
        if beta:
            fmin = f[1] if f.size > 1 else 1.0
            gain = np.maximum(f, fmin) ** (-beta / 2.0)
        if band is not None:
            lo, hi = band
            gain = gain * ((f >= lo) & (f <= hi))
        gain[0] = 0.0                            # no DC
        w = np.fft.irfft(spec * gain, n)
    else:
        w = w - w.mean()
    if mod is not None:
        freq, depth = mod
        t = np.arange(n) / rate
        w = w * (1.0 + depth * np.sin(2 * np.pi * freq * t + rng.uniform(0, 2 * np.pi)))
    rms = np.sqrt(power(w))
    if rms <= 0.0:
        raise ValueError(f"noise of {n} samples in band {band} is empty")
    return w / rms


def noise_params(rng: np.random.Generator, rate: int = 16000
                 ) -> tuple[str, tuple[float, float] | None, tuple[float, float] | None]:
    """The random shape of a :func:`random_noise`: ``(kind, band, mod)``: a uniform kind, a band with
    probability 0.5 (low edge U(50, 1000) Hz, high edge at least 500 Hz above, at most Nyquist) and a
    modulation with probability 0.3 (U(0.5, 4) Hz, depth U(0.3, 1))."""
    kind = NOISE_KINDS[int(rng.integers(len(NOISE_KINDS)))]
    band = None
    if rng.random() < 0.5:
        lo = float(rng.uniform(50.0, 1000.0))
        hi = float(min(rng.uniform(lo + 500.0, rate / 2), rate / 2))
        band = (lo, hi)
    mod = (float(rng.uniform(0.5, 4.0)), float(rng.uniform(0.3, 1.0))) if rng.random() < 0.3 else None
    return kind, band, mod


def random_noise(n: int, rng: np.random.Generator, rate: int = 16000) -> tuple[np.ndarray, str]:
    """Noise of a random shape (:func:`noise_params`; the ``noise`` copy of the data dir builder);
    returns ``(noise, description)``."""
    kind, band, mod = noise_params(rng, rate)
    desc = kind + (f" band={band[0]:.0f}-{band[1]:.0f}Hz" if band else "") + \
        (f" mod={mod[0]:.2f}Hz/{mod[1]:.2f}" if mod else "")
    return make_noise(kind, n, rng, rate, band, mod), desc


def babble(x: np.ndarray, others: Sequence[np.ndarray], snr_db: float, rng: np.random.Generator,
           peak: float = INT16_PEAK) -> np.ndarray:
    """Add the babble of ``others`` (other utterances) to ``x`` at ``snr_db`` dB.

    Each other utterance is cut or cyclically repeated to ``len(x)`` from a random offset and scaled to
    unit RMS (silent ones are skipped); their sum is added like :func:`add_noise`. Returns float64.
    """
    x = np.asarray(x, dtype=np.float64)
    return babble_mix(x, [fit_length(o, x.size, rng) for o in others], snr_db, peak)


def babble_mix(x: np.ndarray, segments: Sequence[np.ndarray], snr_db: float,
               peak: float = INT16_PEAK) -> np.ndarray:
    """The mixing step of :func:`babble`: ``segments`` (already of ``len(x)`` samples) each scaled to unit
    RMS (silent ones skipped), summed and added to ``x`` at ``snr_db`` dB. Returns float64."""
    x = np.asarray(x, dtype=np.float64)
    total = np.zeros(x.size)
    used = 0
    for seg in segments:
        seg = np.asarray(seg, dtype=np.float64)
        p = power(seg)
        if p > 0.0:
            total += seg / np.sqrt(p)
            used += 1
    if used == 0:
        raise ValueError("babble: every other utterance is silent")
    return add_noise(x, total, snr_db, None, peak)


def synth_rir(rt60: float, rate: int, rng: np.random.Generator, drr_db: float | None = None,
              predelay_s: float | None = None) -> np.ndarray:
    """A synthetic room impulse response (float64): direct path of amplitude 1 at the pre-delay, then
    exponentially decaying Gaussian noise (energy −60 dB after ``rt60`` seconds).

    ``drr_db`` (direct-to-reverberant energy ratio) defaults to U(0, 10) dB, ``predelay_s`` (source
    distance / speed of sound) to U(1, 10) ms. The tail never exceeds 0.9 of the direct path, so the
    direct path is the peak (what :func:`reverberate` aligns on).
    """
    if rt60 <= 0:
        raise ValueError(f"rt60 must be positive, got {rt60}")
    if drr_db is None:
        drr_db = float(rng.uniform(*DRR_DB))
    if predelay_s is None:
        predelay_s = float(rng.uniform(0.001, 0.010))
    d = int(round(predelay_s * rate))
    n_tail = max(int(round(1.25 * rt60 * rate)), 1)
    t = np.arange(1, n_tail + 1) / rate
    tail = rng.standard_normal(n_tail) * np.exp(-3.0 * np.log(10.0) * t / rt60)
    tail *= np.sqrt(10.0 ** (-drr_db / 10.0) / np.sum(tail * tail))
    m = np.max(np.abs(tail))
    if m > 0.9:
        tail *= 0.9 / m
    h = np.zeros(d + 1 + n_tail)
    h[d] = 1.0
    h[d + 1:] = tail
    return h


def reverberate(x: np.ndarray, rir: np.ndarray, normalize: str = "power",
                peak: float = INT16_PEAK) -> np.ndarray:
    """Convolve ``x`` with ``rir`` as Kaldi's ``wav-reverberate --shift-output=true``: the output starts
    at the RIR's peak (the direct path) and has the input's length.

    ``normalize``: ``power`` (Kaldi's ``--normalize-output``: same mean square as ``x``), ``direct``
    (divide by the peak tap: the direct sound keeps the input level) or ``none``. Then
    :func:`limit_peak`. Returns float64.
    """
    x = np.asarray(x, dtype=np.float64)
    rir = np.asarray(rir, dtype=np.float64)
    p = int(np.argmax(np.abs(rir)))
    y = fftconvolve(x, rir)[p:p + x.size]
    if normalize == "power":
        py = power(y)
        if py > 0.0:
            y = y * np.sqrt(power(x) / py)
    elif normalize == "direct":
        y = y / rir[p]
    elif normalize != "none":
        raise ValueError(f"normalize must be power, direct or none, got {normalize!r}")
    return limit_peak(y, peak)


def schroeder_rt60(rir: np.ndarray, rate: int, lo_db: float = -5.0, hi_db: float = -25.0) -> float:
    """RT60 of an impulse response by Schroeder backward integration: a least-squares line through the
    energy decay curve between ``lo_db`` and ``hi_db`` (T20 by default), extrapolated to −60 dB."""
    e = np.asarray(rir, dtype=np.float64) ** 2
    edc = np.cumsum(e[::-1])[::-1]
    edc_db = 10.0 * np.log10(np.maximum(edc / edc[0], 1e-300))
    sel = np.nonzero((edc_db <= lo_db) & (edc_db >= hi_db))[0]
    if sel.size < 2:
        raise ValueError("decay curve does not span the fitting range")
    slope = np.polyfit(sel / rate, edc_db[sel], 1)[0]
    return -60.0 / slope


def speed_perturb(x: np.ndarray, factor: float, rate: int) -> np.ndarray:
    """``sox speed <factor> rate <rate>``: pitch and tempo scaled by ``factor``, length ``≈ N/factor``.

    Runs sox on raw float samples (no dither, repeatable); returns float64 on the input's scale.
    """
    x32 = (np.asarray(x, dtype=np.float64) / 32768.0).astype("<f4")
    raw = ["-t", "raw", "-e", "floating-point", "-b", "32"]
    cmd = ["sox", "-R", "-D", *raw, "-r", str(rate), "-c", "1", "-", *raw, "-",
           "speed", f"{factor:g}", "rate", str(rate)]
    proc = subprocess.run(cmd, input=x32.tobytes(), capture_output=True)
    if proc.returncode != 0:
        raise RuntimeError(f"sox failed ({' '.join(cmd)}): {proc.stderr.decode(errors='replace').strip()}")
    return np.frombuffer(proc.stdout, dtype="<f4").astype(np.float64) * 32768.0


# ----------------------------------------------------------------------------------------------------
# Data dir builder


@dataclass(frozen=True)
class AugOptions:
    """Options of the data dir builder (ranges are inclusive uniform draws)."""

    types: tuple[str, ...] = AUG_TYPES
    speed_factors: tuple[float, ...] = ()
    seed: int = 0
    snr_noise: tuple[float, float] = (0.0, 15.0)
    snr_babble: tuple[float, float] = (13.0, 20.0)
    num_babble: tuple[int, int] = (3, 7)
    rt60: tuple[float, float] = (0.2, 0.8)
    reverb_norm: str = "power"

    def describe(self) -> str:
        """A stable string of every option (for done-stamps)."""
        return (f"types={','.join(self.types)} speed={','.join(f'{f:g}' for f in self.speed_factors)} "
                f"seed={self.seed} snr_noise={self.snr_noise} snr_babble={self.snr_babble} "
                f"num_babble={self.num_babble} rt60={self.rt60} reverb_norm={self.reverb_norm}")


def utt_rng(seed: int, utt: str, what: str) -> np.random.Generator:
    """The generator of one copy: a function of the seed, the copy type and the utterance id only."""
    digest = hashlib.sha256(f"{what}\0{utt}".encode()).digest()
    words = np.frombuffer(digest[:16], dtype="<u4").tolist()
    return np.random.default_rng(np.random.SeedSequence([int(seed) & 0xFFFFFFFF, *words]))


def speed_tag(factor: float) -> str:
    """``sp0.9`` for 0.9 (Kaldi's prefix)."""
    return f"sp{factor:g}"


def pick_babble(utt: str, utts: Sequence[str], num: tuple[int, int], rng: np.random.Generator) -> list[str]:
    """Draw between ``num[0]`` and ``num[1]`` other utterances (never ``utt`` itself), at random."""
    pool = [u for u in utts if u != utt]
    if not pool:
        raise DataError(f"babble for {utt}: the data dir has no other utterance")
    k = int(rng.integers(num[0], num[1] + 1))
    k = min(k, len(pool))
    idx = rng.choice(len(pool), size=k, replace=False)
    return [pool[i] for i in idx]


def job_utts(utts: Sequence[str], job: int, nj: int) -> list[str]:
    """The utterances of job ``job`` (1-based) of ``nj``: contiguous, sizes differ by at most one."""
    if not 1 <= job <= nj:
        raise ValueError(f"job {job} is not in 1..{nj}")
    n = len(utts)
    return list(utts[(job - 1) * n // nj: job * n // nj])


def write_wav(path: str | os.PathLike, y: np.ndarray, rate: int) -> None:
    """Write ``y`` (int16 scale) as a 16-bit WAV atomically; values are rounded, never wrapped."""
    data = np.clip(np.rint(y), -32768, 32767).astype(np.int16)
    with atomic_path(path) as tmp:
        sf.write(tmp, data, rate, format="WAV", subtype="PCM_16")


@dataclass
class AugJobResult:
    """What a job wrote: copies per type, audio seconds per type, CPU seconds per type."""

    copies: dict[str, int] = field(default_factory=dict)
    audio_s: dict[str, float] = field(default_factory=dict)
    cpu_s: dict[str, float] = field(default_factory=dict)
    reused: bool = False


def augment_utterance(utt: str, x: np.ndarray, rate: int, aug: str, opts: AugOptions,
                      utts: Sequence[str], load) -> tuple[np.ndarray, str]:
    """One augmented copy of ``x`` (type ``noise``/``babble``/``reverb`` or ``sp<F>``); ``load(utt)``
    returns the samples of another utterance (for babble). Returns ``(samples, description)``."""
    rng = utt_rng(opts.seed, utt, aug)
    if aug == "noise":
        snr = float(rng.uniform(*opts.snr_noise))
        noise, desc = random_noise(x.size, rng, rate)
        return add_noise(x, noise, snr), f"noise {desc} snr={snr:.2f}"
    if aug == "babble":
        snr = float(rng.uniform(*opts.snr_babble))
        others = pick_babble(utt, utts, opts.num_babble, rng)
        return babble(x, [load(o) for o in others], snr, rng), f"babble {','.join(others)} snr={snr:.2f}"
    if aug == "reverb":
        rt60 = float(rng.uniform(*opts.rt60))
        rir = synth_rir(rt60, rate, rng)
        return reverberate(x, rir, opts.reverb_norm), f"reverb rt60={rt60:.3f}"
    if aug.startswith("sp"):
        f = float(aug[2:])
        return limit_peak(speed_perturb(x, f, rate)), f"speed {f:g}"
    raise ValueError(f"unknown augmentation {aug!r}")


def augment_job(wav_scp: str | os.PathLike, utt2spk: str | os.PathLike, audio_dir: str | os.PathLike,
                out_prefix: str | os.PathLike, opts: AugOptions, job: int = 1, nj: int = 1,
                done_stamp: str | os.PathLike | None = None, verbose: bool = True) -> AugJobResult:
    """Write the augmented copies of job ``job`` of ``nj`` and its tables
    ``<out_prefix>.{wav.scp,utt2spk,utt2dur,utt2uniq}`` (unsorted parts, merged by the step).

    ``utt2spk`` only names the speaker of each copy; babble sources are drawn from the utterance ids
    of ``wav_scp``. With a matching ``done_stamp`` and existing outputs nothing is redone. ``verbose``
    logs a line per copy (its random draws: noise kind, babble sources, SNR, RT60).
    """
    tables = ("wav.scp", "utt2spk", "utt2dur", "utt2uniq")
    outs = [Path(f"{out_prefix}.{t}") for t in tables]
    audio_dir = Path(audio_dir).resolve()
    sopts = f"{opts.describe()} job={job} nj={nj} audio_dir={audio_dir} out={out_prefix}"
    inputs = [str(wav_scp), str(utt2spk)]
    if done_stamp is not None and all(p.is_file() for p in outs) and stamp.is_done(done_stamp, inputs, sopts):
        log.info(f"augment_job: job {job} is up to date ({done_stamp}); nothing to do")
        return AugJobResult(reused=True)
    for t in opts.types:
        if t not in AUG_TYPES:
            raise DataError(f"unknown augmentation type {t!r}; expected some of {', '.join(AUG_TYPES)}")
    scp = read_scp(wav_scp)
    line = {u: i for i, u in enumerate(scp, 1)}
    spk = read_map(utt2spk)
    utts = c_sorted(scp)
    mine = job_utts(utts, job, nj)
    augs = list(opts.types) + [speed_tag(f) for f in opts.speed_factors]

    def load(u: str) -> tuple[np.ndarray, int]:
        if u not in scp:
            raise DataError(f"{wav_scp}: no entry for utterance {u}")
        return read_audio(scp[u], f"{wav_scp}:{line[u]}")

    res = AugJobResult(copies={a: 0 for a in augs}, audio_s={a: 0.0 for a in augs},
                       cpu_s={a: 0.0 for a in augs})
    rows: dict[str, list[str]] = {t: [] for t in tables}
    last = time.monotonic()
    for i, utt in enumerate(mine, 1):
        if utt not in spk:
            raise DataError(f"{utt2spk}: no speaker for utterance {utt} (in {wav_scp}:{line[utt]})")
        x, rate = load(utt)

        def other(u: str, rate: int = rate, utt: str = utt) -> np.ndarray:
            y, r = load(u)
            if r != rate:
                raise DataError(f"{wav_scp}:{line[u]}: sample rate {r} Hz differs from {rate} Hz of {utt}")
            return y

        for aug in augs:
            t0 = time.process_time()
            y, desc = augment_utterance(utt, x, rate, aug, opts, utts, other)
            if aug.startswith("sp"):
                new, new_spk, sub = f"{aug}-{utt}", f"{aug}-{spk[utt]}", aug
            else:
                new, new_spk, sub = f"{utt}-{aug}", spk[utt], aug
            path = audio_dir / sub / f"{new}.wav"
            write_wav(path, y, rate)
            res.cpu_s[aug] += time.process_time() - t0
            res.copies[aug] += 1
            res.audio_s[aug] += y.size / rate
            rows["wav.scp"].append(f"{new} {path}")
            rows["utt2spk"].append(f"{new} {new_spk}")
            rows["utt2dur"].append(f"{new} {y.size / rate:.6g}")
            rows["utt2uniq"].append(f"{new} {utt}")
            if verbose:
                log.info(f"{new}: {desc}")
        if time.monotonic() - last > 30:
            log.info(f"augment_job: {i}/{len(mine)} utterances")
            last = time.monotonic()
    for t, p in zip(tables, outs, strict=True):
        write_lines(p, rows[t])
    if done_stamp is not None:
        stamp.mark_done(done_stamp, inputs, sopts)
    summary = ", ".join(f"{a}: {res.copies[a]} ({res.audio_s[a]:.1f} s audio, {res.cpu_s[a]:.1f} CPU s)"
                        for a in augs)
    log.info(f"augment_job: job {job}/{nj}: wrote {len(mine) * len(augs)} copies of {len(mine)} utterances "
         f"under {audio_dir}; {summary}")
    return res
