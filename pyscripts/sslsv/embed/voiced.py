"""The voiced samples of one training utterance, read window by window (docs/network.md §2.1).

A training item needs one 2-s chunk of an utterance's voiced samples (and, for babble, a chunk of a few
others). Decoding the whole file for it costs as much as the rest of the item's work together on
VoxCeleb-length audio, so a :class:`VoicedSource` maps the stage-1 VAD onto the file's samples and reads
only the span a window covers (a seek into WAV or FLAC). The samples returned are exactly those of
decoding the whole file and selecting the voiced ones (:func:`voiced_samples`), so the items do not
depend on how the audio was read.

Entries that cannot be read by window fall back to one whole decode per access: ``cmd |`` pipes (m4a
through ffmpeg, sox pipes), formats libsndfile cannot seek, and audio at another rate than the features'
(resampled whole). For a corpus of pipes, decode the audio once to files (VoxCeleb2:
``local/prepare_voxceleb.sh --convert-m4a true``) or keep it decoded in memory (``train.cache_audio``,
for corpora that fit in RAM); docs/network.md §2.1.

Voiced-sample geometry (the stage-1 VAD frames use ``--snip-edges=false``): sample ``n`` of an utterance
of ``N`` samples belongs to 10-ms frame ``min(n // s, T-1)``, ``s`` = 10 ms of samples.
"""

from __future__ import annotations

import warnings

import kaldiio
import numpy as np
import soundfile as sf

from ..audio import is_pipe, read_audio
from ..features.kaldi_options import MfccConfig
from ..features.mfcc import resample
from ..tables import DataError

VAD_SHIFT_MS = 10.0          # frame shift of the stage-1 VAD (conf/mfcc.conf)


def _check_vad(v: np.ndarray, n: int, rate: int, where: str) -> int:
    """Samples per VAD frame; a VAD whose length does not match ``n`` samples (``round(N/s)`` ± 2
    frames) is an error."""
    s = int(rate * VAD_SHIFT_MS / 1000)
    expect = (n + s // 2) // s
    if abs(v.size - expect) > 2 or v.size == 0:
        raise DataError(f"{where + ': ' if where else ''}VAD has {v.size} frames but the audio has "
                        f"{n} samples ({expect} frames of {VAD_SHIFT_MS:g} ms)")
    return s


def voiced_samples(x: np.ndarray, vad: np.ndarray, rate: int, where: str = "") -> np.ndarray:
    """The samples of ``x`` whose 10-ms VAD frame is voiced (sample ``n`` → frame ``min(n // s, T-1)``),
    concatenated. A VAD whose length does not match the audio (``round(N/s)`` ± 2 frames) is an error."""
    x = np.asarray(x)
    v = np.asarray(vad).reshape(-1) != 0
    s = _check_vad(v, x.size, rate, where)
    frame = np.minimum(np.arange(x.size) // s, v.size - 1)
    return x[v[frame]]


def voiced_runs(vad: np.ndarray, n: int, rate: int, where: str = "") -> tuple[np.ndarray, np.ndarray]:
    """The voiced samples of an ``n``-sample utterance as runs ``[starts[r], ends[r])`` of sample
    indices (ascending, disjoint, non-empty): the same samples, in the same order, as
    :func:`voiced_samples` selects."""
    v = np.asarray(vad).reshape(-1) != 0
    s = _check_vad(v, n, rate, where)
    t = np.arange(v.size, dtype=np.int64)
    lo = np.minimum(t * s, n)
    hi = np.minimum((t + 1) * s, n)
    hi[-1] = n                                   # the last frame takes every sample after it
    keep = v & (hi > lo)
    lo, hi = lo[keep], hi[keep]
    if lo.size == 0:
        return lo, hi
    new = np.ones(lo.size, dtype=bool)
    new[1:] = lo[1:] != hi[:-1]                  # a run starts where the previous one does not end
    first = np.flatnonzero(new)
    last = np.append(first[1:], lo.size) - 1
    return lo[first], hi[last]


class VoicedSource:
    """The voiced samples of one utterance: ``size`` of them, ``read(start, n)`` any window, ``all()``
    every one. Float32 on the int16 scale, at the feature rate."""

    size: int

    def read(self, start: int, n: int) -> np.ndarray:
        """Voiced samples ``[start, start + n)`` (``0 <= start``, ``start + n <= size``)."""
        raise NotImplementedError

    def all(self) -> np.ndarray:
        """Every voiced sample."""
        return self.read(0, self.size)


class ArraySource(VoicedSource):
    """Voiced samples already in memory (a decoded pipe, a resampled file, the audio cache)."""

    def __init__(self, x: np.ndarray) -> None:
        self.x = np.asarray(x, dtype=np.float32)
        self.size = int(self.x.size)

    def read(self, start: int, n: int) -> np.ndarray:
        return self.x[start:start + n]

    def all(self) -> np.ndarray:
        return self.x


class FileWindows(VoicedSource):
    """Voiced samples of an open, seekable audio file at the feature rate, read window by window: one
    seek and one read of the span from the window's first to its last voiced sample. The file stays
    open while the object lives (a training item's draws)."""

    def __init__(self, f: sf.SoundFile, starts: np.ndarray, ends: np.ndarray, where: str = "") -> None:
        self.f, self.where = f, where
        self.starts, self.ends = starts, ends
        self.offsets = np.concatenate(([0], np.cumsum(ends - starts)))   # voiced index of each run
        self.size = int(self.offsets[-1])

    def read(self, start: int, n: int) -> np.ndarray:
        if n <= 0:
            return np.zeros(0, dtype=np.float32)
        if start < 0 or start + n > self.size:
            raise IndexError(f"window [{start}, {start + n}) outside 0..{self.size}")
        r0 = int(np.searchsorted(self.offsets, start, side="right")) - 1
        r1 = int(np.searchsorted(self.offsets, start + n, side="left")) - 1
        a = int(self.starts[r0] + (start - self.offsets[r0]))
        b = int(self.starts[r1] + (start + n - self.offsets[r1]))
        span = self._read_span(a, b)
        if r0 == r1:
            return span
        # keep the voiced parts of the span: runs r0..r1, cut to [a, b)
        lo = np.maximum(self.starts[r0:r1 + 1], a) - a
        hi = np.minimum(self.ends[r0:r1 + 1], b) - a
        return np.concatenate([span[p:q] for p, q in zip(lo, hi, strict=True)])

    def _read_span(self, a: int, b: int) -> np.ndarray:
        try:
            self.f.seek(a)
            data = self.f.read(b - a, dtype="int16", always_2d=True)
        except (sf.LibsndfileError, RuntimeError, ValueError, OSError) as e:
            raise DataError(f"{self.where + ': ' if self.where else ''}cannot read samples {a}..{b} of "
                            f"{self.f.name!r}: {e}") from e
        if data.shape[0] != b - a:
            raise DataError(f"{self.where + ': ' if self.where else ''}{self.f.name!r}: read "
                            f"{data.shape[0]} samples at {a}, expected {b - a} (file shorter than its "
                            f"header says?)")
        return data[:, 0].astype(np.float32)


def _load_vad(vad_entry: str, vad_where: str) -> np.ndarray:
    try:
        return kaldiio.load_mat(vad_entry)
    except Exception as e:  # noqa: BLE001 - kaldiio raises many types for a bad ark
        raise DataError(f"{vad_where or 'vad.scp'}: cannot read VAD {vad_entry!r}: {e}") from e


def _to_rate(x: np.ndarray, rate: int, cfg: MfccConfig, where: str) -> np.ndarray:
    """``x`` at the config's rate (resampled only where the config allows it, as compute_mfcc does)."""
    fs = int(cfg.sample_frequency)
    if rate == fs:
        return x
    if (rate > fs and cfg.allow_downsample) or (rate < fs and cfg.allow_upsample):
        return resample(x, rate, fs)
    raise DataError(f"{where + ': ' if where else ''}sample rate {rate} Hz differs from "
                    f"--sample-frequency={fs} of the MFCC config (resample in wav.scp, e.g. "
                    f"'sox in.wav -r {fs} -t wav - |', or allow resampling in the config)")


def _no_voiced(vad_where: str) -> None:
    warnings.warn(f"{vad_where}: no voiced frame; using the whole utterance", stacklevel=3)


def load_voiced(entry: str, vad_entry: str | None, cfg: MfccConfig, wav_where: str = "",
                vad_where: str = "") -> np.ndarray:
    """The voiced samples (all samples if ``vad_entry`` is None) of a ``wav.scp`` entry at the rate of
    ``cfg``, float32 on the int16 scale, decoded whole. No voiced sample: the whole utterance, with a
    warning."""
    x, rate = read_audio(entry, wav_where)
    if vad_entry is not None:
        v = voiced_samples(x, _load_vad(vad_entry, vad_where), rate, vad_where)
        if v.size:
            x = v
        else:
            _no_voiced(vad_where)
    return np.asarray(_to_rate(x, rate, cfg, wav_where), dtype=np.float32)


def open_voiced(entry: str, vad_entry: str | None, cfg: MfccConfig, wav_where: str = "",
                vad_where: str = "") -> VoicedSource:
    """The voiced samples of a ``wav.scp`` entry as a :class:`VoicedSource`: read by window where the
    entry is a seekable mono file at the rate of ``cfg``, else decoded whole (:func:`load_voiced`).
    Either way the samples equal :func:`load_voiced`'s."""
    path = entry.strip()
    whole = (entry, vad_entry, cfg, wav_where, vad_where)
    if is_pipe(path):
        return ArraySource(load_voiced(*whole))
    try:
        f = sf.SoundFile(path)
    except (sf.LibsndfileError, RuntimeError, ValueError, OSError):
        return ArraySource(load_voiced(*whole))          # read_audio names the problem
    if (f.channels != 1 or f.frames <= 0 or not f.seekable()
            or int(f.samplerate) != int(cfg.sample_frequency)):
        f.close()
        return ArraySource(load_voiced(*whole))
    n = int(f.frames)
    if vad_entry is None:
        starts, ends = np.array([0]), np.array([n])
    else:
        starts, ends = voiced_runs(_load_vad(vad_entry, vad_where), n, int(f.samplerate), vad_where)
        if starts.size == 0:
            _no_voiced(vad_where)
            starts, ends = np.array([0]), np.array([n])
    return FileWindows(f, starts.astype(np.int64), ends.astype(np.int64), wav_where)


def fit_window(src: VoicedSource, n: int, rng: np.random.Generator) -> np.ndarray:
    """A chunk of ``n`` voiced samples: from a uniform random start if ``src.size >= n``, else every
    sample tiled (repeated from the start) and cut to ``n``. One draw from ``rng`` in the first case."""
    if src.size >= n:
        start = int(rng.integers(0, src.size - n + 1))
        return src.read(start, n)
    x = src.all()
    return x[np.arange(n) % x.size]


def cyclic_window(src: VoicedSource, n: int, rng: np.random.Generator) -> np.ndarray:
    """``n`` voiced samples from a uniform random offset, wrapping around to the start (what
    :func:`sslsv.augment.fit_length` does to a babble source): one draw from ``rng``."""
    off = int(rng.integers(src.size))
    if off + n <= src.size:
        return src.read(off, n)
    if n <= src.size:
        return np.concatenate([src.read(off, src.size - off), src.read(0, n - (src.size - off))])
    x = src.all()
    return x[(off + np.arange(n)) % x.size]
