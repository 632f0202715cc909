"""Training data pipeline of the speaker-embedding network (docs/network.md §2.1, §2.6, §5): one random
2-s chunk of each utterance per epoch, optionally speed-perturbed (as new classes) and corrupted on the
fly, turned into 40-dim MFCC or 80-dim filterbanks.

Per item, in this order (WeSpeaker's, docs/network.md §2.1):

1. **read** the ``wav.scp`` entry (a path or a ``cmd |`` pipe) on Kaldi's int16 scale: only the
   samples the item's windows need where the file can seek (:mod:`.voiced`), else the whole utterance;
2. **voiced samples** (``use_vad``): the samples covered by the voiced 10-ms frames of ``vad.scp``,
   concatenated. This mirrors Kaldi's x-vector recipe, which removes silence (``select-voiced-frames``
   on the features) before cutting training examples; here it is done on the waveform so that features
   can be recomputed on augmented audio. The stage-1 VAD frames use ``--snip-edges=false``, so frame
   ``t`` is centred on the 10-ms block ``[t·s, (t+1)·s)`` (``s`` = 10 ms of samples): sample ``n``
   belongs to frame ``min(n // s, T-1)``. An utterance without any voiced sample is used whole
   (with a warning) rather than dropped, since a map-style dataset cannot skip an index;
3. **speed perturbation** (``speed_perturb``): factor 1.0 / 0.9 / 1.1 uniformly, label ← label + K·idx
   (3K classes), by polyphase resampling (:mod:`.resample`: ``scipy.signal.resample_poly``; stage 2
   uses ``sox speed``, a subprocess per item). Only a random window just long enough for the chunk is
   perturbed;
4. **random chunk** of ``chunk_samples`` (32,240 samples = 200 frames with snip-edges): uniform start in a
   long signal; a short one is tiled (repeated) and cut to length (WeSpeaker);
5. **corruption** with probability ``aug_prob``: one of reverb / coloured noise / babble / reverb+noise
   (weights 0.35 / 0.25 / 0.25 / 0.15), with stage 2's functions (:mod:`sslsv.augment`). Babble mixes
   chunks of 3-7 other utterances of *other* (pseudo-)speakers. There is no WeSpeaker-style peak
   normalisation to full scale: stage 2's functions only scale down a result that would clip, and the
   overall level of a chunk is removed by CMN anyway (a gain only shifts c0);
6. **MFCC** (or log mel filterbanks, ``kind: fbank``) with kaldi-native-fbank (``compute_mfcc``),
   after adding Gaussian dither of standard deviation ``dither`` drawn from the item's generator (the
   config file's own dither is ignored). With ``compute: device`` the item is the dithered waveform
   chunk and the training step makes the features in one batch on the device (:func:`device_frontend`);
7. in the training step, on the device: :func:`cmn` (mean over time), then optional :func:`spec_augment`.

Determinism: every random draw of item ``i`` at epoch ``e`` comes from
``np.random.default_rng([seed, e, i])`` (babble sources, sox and knf are deterministic), so an item is a
pure function of ``(seed, epoch, index)`` whatever the number of DataLoader workers or their order. The
epoch lives in a shared-memory tensor, so :meth:`ChunkDataset.set_epoch` also reaches persistent
workers (call it before creating the epoch's iterator).
"""

from __future__ import annotations

import dataclasses
import functools
import math
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .. import augment
from ..features.kaldi_options import MfccConfig, read_mfcc_config
from ..features.mfcc import compute_mfcc, num_frames
from ..tables import DataError, c_sorted, read_scp, read_table
from . import device_augment, resample
from .voiced import ArraySource, VoicedSource, cyclic_window, fit_window, load_voiced, open_voiced
from .voiced import voiced_samples as voiced_samples  # re-exported: part of this module's interface

SPEED_FACTORS = (1.0, 0.9, 1.1)
CORRUPTIONS = ("reverb", "noise", "babble", "reverb_noise")
MIN_EXTRACT_FRAMES = 50      # extraction tiles shorter utterances up to this (docs/network.md §6.1)
_SPEED_MARGIN = 800          # extra samples around the window that is speed-perturbed


def _from_dict(cls: type, d: Mapping[str, Any], where: str):
    """Build dataclass ``cls`` from ``d``; unknown keys are errors naming ``where``; lists become tuples."""
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(d) - names)
    if unknown:
        raise DataError(f"{where}: unknown option(s) {', '.join(unknown)} "
                        f"(known: {', '.join(sorted(names))})")
    kw = {k: tuple(v) if isinstance(v, list) else v for k, v in d.items()}
    obj = cls(**kw)
    obj.check(where)
    return obj


@functools.lru_cache(maxsize=8)
def _load_mfcc_config(path: str) -> MfccConfig:
    p = Path(path)
    if not p.is_absolute() and not p.is_file() and os.environ.get("SSLSV_ROOT"):
        p = Path(os.environ["SSLSV_ROOT"]) / p
    return dataclasses.replace(read_mfcc_config(p), dither=0.0)


def samples_for_frames(frames: int, cfg: MfccConfig) -> int:
    """The fewest samples from which the MFCC config makes exactly ``frames`` frames."""
    shift, length = cfg.window_shift_samples, cfg.window_size_samples
    n = (frames - 1) * shift + length if cfg.snip_edges else frames * shift - shift // 2
    assert num_frames(n, cfg) == frames and num_frames(n - 1, cfg) < frames
    return n


@dataclass
class FeatureConfig:
    """Front end of the network: MFCC config, training chunk length, silence removal and dither.

    ``use_vad``: train and extract on voiced samples only (see the module docstring; as Kaldi's x-vector
    recipe removes silence). ``dither``: int16-scale Gaussian dither in training; extraction uses 0.
    """

    mfcc_config: str = "conf/mfcc_embed.conf"
    kind: str = "mfcc"          # mfcc (cepstra) | fbank (log mel energies, num_mel_bins of the same config)
    compute: str = "worker"     # worker: features made by the DataLoader workers (kaldi-native-fbank) |
                                # device: workers deliver dithered waveform chunks, the training step
                                # makes the features on the device in one batch (KaldiFeatures)
    chunk_frames: int = 200
    use_vad: bool = True
    dither: float = 1.0

    @classmethod
    def from_dict(cls, d: Mapping[str, Any], where: str = "features") -> FeatureConfig:
        """From a config section; unknown keys are a :class:`DataError` naming ``where``."""
        return _from_dict(cls, d, where)

    def check(self, where: str = "features") -> None:
        """Reject values that cannot work."""
        if self.compute not in ("worker", "device"):
            raise DataError(f"{where}: compute must be worker or device, got {self.compute!r}")
        if self.kind not in ("mfcc", "fbank"):
            raise DataError(f"{where}: kind must be mfcc or fbank, got {self.kind!r}")
        if int(self.chunk_frames) < 1:
            raise DataError(f"{where}: chunk_frames must be >= 1, got {self.chunk_frames}")
        if self.dither < 0:
            raise DataError(f"{where}: dither must be >= 0, got {self.dither}")

    def mfcc(self) -> MfccConfig:
        """The MFCC options (read once; a relative path is tried in the cwd, then under $SSLSV_ROOT);
        their dither is 0 because the pipeline adds its own seeded dither."""
        return _load_mfcc_config(str(self.mfcc_config))

    @property
    def feat_dim(self) -> int:
        """Feature dimension (``--num-ceps``, or ``--num-mel-bins`` for fbank)."""
        cfg = self.mfcc()
        return int(cfg.num_mel_bins if self.kind == "fbank" else cfg.num_ceps)

    @property
    def sample_rate(self) -> int:
        """Sample rate of the features (``--sample-frequency``)."""
        return int(self.mfcc().sample_frequency)

    def chunk_samples(self) -> int:
        """Samples of a training chunk: ``(F-1)·shift + window`` with snip-edges (32,240 for 200 frames at
        16 kHz), ``F·shift - shift/2`` without."""
        return samples_for_frames(int(self.chunk_frames), self.mfcc())


@dataclass
class AugConfig:
    """On-the-fly augmentation (docs/network.md §5.9). Ranges are inclusive uniform draws.

    ``aug_prob``: probability that a chunk is corrupted, by one type drawn with the ``*_weight`` odds.
    ``speed_perturb``: factors 1.0/0.9/1.1 uniformly, as new classes (label + K·idx).
    ``spec_aug``: per-sample SpecAugment with WeSpeaker's widths (one time mask of 1..``spec_max_t``
    frames and one feature mask of 1..``spec_max_f`` dims, with probability ``spec_aug_prob``). On MFCC
    input the feature mask zeroes cepstral dimensions, not a frequency band.
    ``compute``: ``worker`` (corruption and dither in the DataLoader workers, numpy) or ``device`` (the
    workers draw each item's plan, the training step corrupts and dithers the batch on the training
    device: :mod:`.device_augment`; needs ``features.compute: device``).
    """

    compute: str = "worker"
    aug_prob: float = 0.6
    reverb_weight: float = 0.35
    noise_weight: float = 0.25
    babble_weight: float = 0.25
    reverb_noise_weight: float = 0.15
    # the corruption ranges of stage 2 (one definition), except a wider RT60 range (docs/network.md §5.3)
    snr_noise: tuple[float, float] = augment.AugOptions.snr_noise
    snr_babble: tuple[float, float] = augment.AugOptions.snr_babble
    num_babble: tuple[int, int] = augment.AugOptions.num_babble
    rt60: tuple[float, float] = (0.2, 1.0)
    reverb_norm: str = augment.AugOptions.reverb_norm
    speed_perturb: bool = False
    spec_aug: bool = False
    spec_aug_prob: float = 0.6
    spec_max_t: int = 10
    spec_max_f: int = 8

    @classmethod
    def from_dict(cls, d: Mapping[str, Any], where: str = "augmentation") -> AugConfig:
        """From a config section; unknown keys are a :class:`DataError` naming ``where``."""
        return _from_dict(cls, d, where)

    @classmethod
    def off(cls) -> AugConfig:
        """No corruption, no speed perturbation, no SpecAugment (extraction, tiny tests)."""
        return cls(aug_prob=0.0, speed_perturb=False, spec_aug=False)

    @property
    def weights(self) -> np.ndarray:
        """Normalised odds of :data:`CORRUPTIONS`."""
        w = np.array([self.reverb_weight, self.noise_weight, self.babble_weight, self.reverb_noise_weight],
                     dtype=np.float64)
        return w / w.sum()

    def check(self, where: str = "augmentation") -> None:
        """Reject values that cannot work."""
        if self.compute not in ("worker", "device"):
            raise DataError(f"{where}: compute must be worker or device, got {self.compute!r}")
        for name in ("aug_prob", "spec_aug_prob"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise DataError(f"{where}: {name} must be in [0, 1], got {getattr(self, name)}")
        w = [self.reverb_weight, self.noise_weight, self.babble_weight, self.reverb_noise_weight]
        if min(w) < 0 or sum(w) <= 0:
            raise DataError(f"{where}: corruption weights must be >= 0 with a positive sum, got {w}")
        for name in ("snr_noise", "snr_babble", "num_babble", "rt60"):
            r = getattr(self, name)
            if len(r) != 2 or r[0] > r[1]:
                raise DataError(f"{where}: {name} must be a range [lo, hi] with lo <= hi, got {r}")
        if self.num_babble[0] < 1 or self.rt60[0] <= 0:
            raise DataError(f"{where}: num_babble must be >= 1 and rt60 > 0")
        if self.reverb_norm not in ("power", "direct", "none"):
            raise DataError(f"{where}: reverb_norm must be power, direct or none, got {self.reverb_norm!r}")
        if self.spec_max_t < 1 or self.spec_max_f < 1:
            raise DataError(f"{where}: spec_max_t and spec_max_f must be >= 1")


# ----------------------------------------------------------------------------------------------------
# Training list


@dataclass
class TrainingList:
    """Utterances of a (pseudo-)labelled data dir in C order, with integer labels 0..K-1 given by the
    C-sorted speaker names; ``*_where`` are ``file:line`` of each entry (for error messages)."""

    utts: list[str]
    labels: np.ndarray
    speakers: list[str]
    wavs: list[str]
    wav_where: list[str]
    vads: list[str] | None = None
    vad_where: list[str] | None = None

    def __len__(self) -> int:
        return len(self.utts)

    @property
    def num_speakers(self) -> int:
        """K, the number of speakers (of the full list, also for a subset)."""
        return len(self.speakers)

    def utterance_features(self, i: int, feat_cfg: FeatureConfig) -> np.ndarray:
        """Whole-utterance features of utterance ``i`` for validation/extraction (see utterance_features)."""
        return utterance_features(self.wavs[i], self.vads[i] if self.vads is not None else None, feat_cfg,
                                  self.utts[i], self.wav_where[i])

    def subset(self, indices: Sequence[int] | np.ndarray) -> TrainingList:
        """The listed utterances, keeping the label space (speaker names and K)."""
        idx = np.asarray(indices, dtype=np.int64).reshape(-1)

        def pick(seq):
            return None if seq is None else [seq[i] for i in idx]

        return TrainingList([self.utts[i] for i in idx], self.labels[idx].copy(), list(self.speakers),
                            pick(self.wavs), pick(self.wav_where), pick(self.vads), pick(self.vad_where))


def read_training_list(data_dir: str | os.PathLike, utt2spk: str | os.PathLike | None = None,
                       use_vad: bool = True) -> TrainingList:
    """Read ``wav.scp``, ``utt2spk`` (or the given labels file) and, if ``use_vad``, ``vad.scp``.

    Every utterance of ``utt2spk`` must have a ``wav.scp`` entry and (with ``use_vad``) a ``vad.scp``
    entry; this is checked here, before any long work, with a :class:`DataError` naming the file and the
    ``utt2spk`` line. Utterances only in ``wav.scp`` are not used.
    """
    d = Path(data_dir)
    spk_path = Path(utt2spk) if utt2spk is not None else d / "utt2spk"
    rows = read_table(spk_path, 2, 2)
    if not rows:
        raise DataError(f"{spk_path}: no utterances")
    line = {u: i for i, (u, _) in enumerate(rows, 1)}
    spk = {u: v[0] for u, v in rows}
    wav_path = d / "wav.scp"
    wavs = read_scp(wav_path)
    wav_line = {u: i for i, u in enumerate(wavs, 1)}
    scps = [("wav.scp", wav_path, wavs)]
    vads: dict[str, str] | None = None
    if use_vad:
        vad_path = d / "vad.scp"
        if not vad_path.is_file():
            raise DataError(f"{vad_path}: no such file (run stage 1, or set use_vad: false)")
        vads = read_scp(vad_path)
        vad_line = {u: i for i, u in enumerate(vads, 1)}
        scps.append(("vad.scp", vad_path, vads))
    for _, path, table in scps:
        for u, _v in rows:
            if u not in table:
                raise DataError(f"{path}: no entry for utterance {u!r} ({spk_path}:{line[u]})")
    utts = c_sorted(spk)
    speakers = c_sorted(set(spk.values()))
    index = {s: k for k, s in enumerate(speakers)}
    return TrainingList(
        utts=utts, labels=np.array([index[spk[u]] for u in utts], dtype=np.int64), speakers=speakers,
        wavs=[wavs[u] for u in utts], wav_where=[f"{wav_path}:{wav_line[u]}" for u in utts],
        vads=None if vads is None else [vads[u] for u in utts],
        vad_where=None if vads is None else [f"{d / 'vad.scp'}:{vad_line[u]}" for u in utts])


# ----------------------------------------------------------------------------------------------------
# Waveform helpers


def corrupt(x: np.ndarray, rate: int, cfg: AugConfig, rng: np.random.Generator,
            babble_sources: Callable[[int, int], list[np.ndarray]]) -> tuple[np.ndarray, dict[str, Any]]:
    """With probability ``cfg.aug_prob``, one corruption of ``x`` drawn from :data:`CORRUPTIONS`.

    ``babble_sources(k, n)`` returns ``n``-sample segments of ``k`` other utterances (drawn by the
    caller, each from a random offset as :func:`sslsv.augment.babble` cuts them). Returns the float64
    result and what was drawn: ``{"type": None | name, "snr": dB, "rt60": s, "num_babble": k}``.
    """
    info: dict[str, Any] = {"type": None}
    if cfg.aug_prob <= 0 or rng.random() >= cfg.aug_prob:
        return np.asarray(x, dtype=np.float64), info
    kind = CORRUPTIONS[int(rng.choice(len(CORRUPTIONS), p=cfg.weights))]
    info["type"] = kind
    y = np.asarray(x, dtype=np.float64)
    if kind in ("reverb", "reverb_noise"):
        rt60 = float(rng.uniform(*cfg.rt60))
        y = augment.reverberate(y, augment.synth_rir(rt60, rate, rng), cfg.reverb_norm)
        info["rt60"] = rt60
    if kind in ("noise", "reverb_noise"):
        snr = float(rng.uniform(*cfg.snr_noise))
        noise, desc = augment.random_noise(y.size, rng, rate)
        y = augment.add_noise(y, noise, snr)
        info.update(snr=snr, noise=desc)
    elif kind == "babble":
        snr = float(rng.uniform(*cfg.snr_babble))
        y, k = mix_babble(y, snr, cfg, rng, babble_sources)
        info.update(snr=snr, num_babble=k)
    return y, info


def mix_babble(y: np.ndarray, snr: float, cfg: AugConfig, rng: np.random.Generator,
               babble_sources: Callable[[int, int], list[np.ndarray]]) -> tuple[np.ndarray, int]:
    """``y`` with the babble of k other utterances at ``snr`` dB, k drawn from ``cfg.num_babble``;
    returns the mixture and k."""
    k = int(rng.integers(cfg.num_babble[0], cfg.num_babble[1] + 1))
    return augment.babble_mix(y, babble_sources(k, y.size), snr), k


# ----------------------------------------------------------------------------------------------------
# Dataset


class ChunkDataset(torch.utils.data.Dataset):
    """One random chunk per utterance and epoch, as ``(feats FloatTensor (T, F), label int)``; with
    ``views`` > 1 that many chunks, each with its own draws (position, augmentation), stacked to
    ``(views, T, F)``: the views of the contrastive objective (:class:`~.contrastive.NTXentHead`).

    ``num_classes`` is K (default: the list's speakers); with speed perturbation the labels live in
    ``0..num_classes_total-1`` = ``0..3K-1``. Audio is read by window (:mod:`.voiced`: only the samples a
    chunk needs); ``cache_audio`` instead keeps every utterance's voiced samples in memory once read
    (per worker process), which also serves babble sources.
    """

    def __init__(self, items: TrainingList, feat_cfg: FeatureConfig, aug_cfg: AugConfig,
                 num_classes: int | None = None, seed: int = 0, cache_audio: bool = False,
                 views: int = 1) -> None:
        if len(items) == 0:
            raise DataError("ChunkDataset: empty training list")
        if feat_cfg.use_vad and items.vads is None:
            raise DataError("ChunkDataset: use_vad is set but the training list has no vad.scp entries "
                            "(read it with use_vad=True)")
        self.items = items
        self.feat_cfg = feat_cfg
        self.aug_cfg = aug_cfg
        self.num_classes = int(items.num_speakers if num_classes is None else num_classes)
        if int(items.labels.max()) >= self.num_classes or int(items.labels.min()) < 0:
            raise DataError(f"ChunkDataset: labels span 0..{int(items.labels.max())} but num_classes is "
                            f"{self.num_classes}")
        self.seed = int(seed)
        if views < 1:
            raise DataError(f"ChunkDataset: views must be >= 1, got {views}")
        self.views = int(views)
        self.cache_audio = cache_audio
        self._cache: dict[int, ArraySource] = {}
        self._epoch = torch.zeros(1, dtype=torch.int64).share_memory_()
        self._mfcc = feat_cfg.mfcc()
        self._rate = int(self._mfcc.sample_frequency)
        self._chunk = feat_cfg.chunk_samples()
        # Babble pool: utterance indices grouped by label, so "other speakers" is a contiguous range
        # of positions around the target's group (no per-item scan of the list).
        self._order = np.argsort(items.labels, kind="stable")
        counts = np.bincount(items.labels, minlength=self.num_classes)
        self._start = np.concatenate(([0], np.cumsum(counts)[:-1]))
        self._count = counts

    @property
    def num_classes_total(self) -> int:
        """Classes of the head: K, or 3K with speed perturbation."""
        return self.num_classes * (len(SPEED_FACTORS) if self.aug_cfg.speed_perturb else 1)

    @property
    def epoch(self) -> int:
        return int(self._epoch[0])

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch's random draws (shared with worker processes, persistent ones included)."""
        self._epoch[0] = int(epoch)

    def __len__(self) -> int:
        return len(self.items)

    def _source(self, i: int) -> VoicedSource:
        """The voiced samples of utterance ``i``: from the cache, or opened for window reads."""
        if i in self._cache:
            return self._cache[i]
        it = self.items
        use_vad = self.feat_cfg.use_vad
        args = (it.wavs[i], it.vads[i] if use_vad else None, self._mfcc, it.wav_where[i],
                it.vad_where[i] if use_vad else "")
        if not self.cache_audio:
            return open_voiced(*args)
        src = self._cache[i] = ArraySource(load_voiced(*args))
        return src

    def _voiced(self, i: int) -> np.ndarray:
        """Every voiced sample of utterance ``i``."""
        return self._source(i).all()

    def _others(self, i: int, k: int, rng: np.random.Generator) -> list[int]:
        """``k`` distinct utterances of speakers other than ``i``'s (any other utterance if there is
        only one speaker)."""
        n = len(self.items)
        lab = int(self.items.labels[i])
        start, count = int(self._start[lab]), int(self._count[lab])
        if count == n:
            if n < 2:
                raise DataError(f"babble for {self.items.utts[i]}: the list has no other utterance")
            pos = rng.choice(n - 1, size=min(k, n - 1), replace=False)
            return [int(p) + int(p >= i) for p in pos]
        pos = rng.choice(n - count, size=min(k, n - count), replace=False)
        pos = np.where(pos < start, pos, pos + count)
        return [int(self._order[p]) for p in pos]

    def _cut(self, i: int, view: int) -> tuple[np.ndarray, int, dict[str, Any], np.random.Generator]:
        """Steps 1-4 of item ``i`` (its view ``view``) at the current epoch: ``(chunk, label, info, rng)``,
        the rng positioned for the corruption draws. View 0 draws what a one-view item draws."""
        key = [self.seed, self.epoch, int(i)] + ([int(view)] if view else [])
        rng = np.random.default_rng(key)
        label = int(self.items.labels[i])
        src = self._source(i)
        n = self._chunk
        info: dict[str, Any] = {"speed": 1.0}
        if self.aug_cfg.speed_perturb:
            idx = int(rng.integers(len(SPEED_FACTORS)))
            f = SPEED_FACTORS[idx]
            label += self.num_classes * idx
            info["speed"] = f
            if f != 1.0:
                w = math.ceil(n * f) + _SPEED_MARGIN
                x = fit_window(src, w, rng) if src.size > w else src.all()
                src = ArraySource(resample.speed(x, f))
        return fit_window(src, n, rng), label, info, rng

    def _babble_sources(self, i: int, rng: np.random.Generator, info: dict[str, Any]
                        ) -> Callable[[int, int], list[np.ndarray]]:
        """``sources(k, m)``: ``m``-sample segments of ``k`` utterances of other speakers than ``i``'s."""
        def sources(k: int, m: int) -> list[np.ndarray]:
            js = self._others(i, k, rng)
            info["babble_utts"] = js
            return [cyclic_window(self._source(j), m, rng) for j in js]
        return sources

    def draw(self, i: int, view: int = 0) -> tuple[np.ndarray, int, dict[str, Any], np.random.Generator]:
        """Steps 1-5 of item ``i`` (its view ``view``) at the current epoch: ``(chunk float64, label, info,
        rng)``, the rng positioned for the dither draw. View 0 draws what a one-view item draws."""
        chunk, label, info, rng = self._cut(i, view)
        y, cinfo = corrupt(chunk, self._rate, self.aug_cfg, rng, self._babble_sources(i, rng, info))
        info.update(cinfo)
        return y, label, info, rng

    def chunk(self, i: int) -> tuple[np.ndarray, int, dict[str, Any]]:
        """The waveform chunk of item ``i`` (before dither and MFCC), its label and the draws."""
        y, label, info, _ = self.draw(i)
        return y, label, info

    def __getitem__(self, i: int) -> tuple[torch.Tensor | dict[str, torch.Tensor], int]:
        """``(features (T, F), label)``; with ``features.compute: device`` the dithered waveform chunk
        ``(chunk_samples,)`` instead, for :func:`device_frontend` in the training step; with
        ``augmentation.compute: device`` the item's :meth:`plan` instead; with ``views`` > 1 the views
        stacked on a first axis."""
        view = self._plan if self.aug_cfg.compute == "device" else self._view
        if self.views == 1:
            return view(i, 0)
        parts = [view(i, v) for v in range(self.views)]
        first = parts[0][0]
        if isinstance(first, dict):
            return {k: torch.stack([x[k] for x, _ in parts]) for k in first}, parts[0][1]
        return torch.stack([x for x, _ in parts]), parts[0][1]

    def _view(self, i: int, view: int) -> tuple[torch.Tensor, int]:
        y, label, _, rng = self.draw(i, view)
        x = y.astype(np.float32)
        if self.feat_cfg.dither > 0:
            x += (self.feat_cfg.dither * rng.standard_normal(x.size)).astype(np.float32)
        if self.feat_cfg.compute == "device":
            return torch.from_numpy(x), label
        feats = compute_mfcc(x, self._rate, self._mfcc, self.items.utts[i], kind=self.feat_cfg.kind)
        if feats.shape[0] != self.feat_cfg.chunk_frames:
            raise RuntimeError(f"chunk of {x.size} samples gave {feats.shape[0]} frames, expected "
                               f"{self.feat_cfg.chunk_frames}")
        return torch.from_numpy(feats), label

    def _plan(self, i: int, view: int) -> tuple[dict[str, torch.Tensor], int]:
        """Item ``i`` for ``augmentation.compute: device``: ``{"wave": chunk (float32; babble already mixed
        in), "plan": corruption plan (float64), "key": int64 key of its Gaussian samples}`` and the label
        (:mod:`.device_augment`)."""
        chunk, label, info, rng = self._cut(i, view)
        plan = device_augment.draw_plan(rng, self.aug_cfg, self._rate)
        y = np.asarray(chunk, dtype=np.float64)
        if plan[device_augment.TYPE] == device_augment.BABBLE:
            y, _ = mix_babble(y, float(plan[device_augment.SNR]), self.aug_cfg, rng,
                              self._babble_sources(i, rng, info))
        key = int(rng.integers(2**62))
        return {"wave": torch.from_numpy(y.astype(np.float32)), "plan": torch.from_numpy(plan),
                "key": torch.tensor(key, dtype=torch.int64)}, label


def device_frontend(feat_cfg: FeatureConfig, device: torch.device) -> torch.nn.Module | None:
    """The batched feature module of ``features.compute: device`` (None for worker-made features)."""
    if feat_cfg.compute != "device":
        return None
    from ..features.torch_frontend import KaldiFeatures

    return KaldiFeatures(feat_cfg.mfcc(), kind=feat_cfg.kind).to(device)


def to_device(x: torch.Tensor | dict[str, torch.Tensor], device: torch.device
              ) -> torch.Tensor | dict[str, torch.Tensor]:
    """A batch (a tensor, or the dict of ``augment.compute: device`` items) on ``device``."""
    if isinstance(x, dict):
        return {k: v.to(device, non_blocking=True) for k, v in x.items()}
    return x.to(device, non_blocking=True)


def device_inputs(x: torch.Tensor | dict[str, torch.Tensor], feat_cfg: FeatureConfig, aug_cfg: AugConfig,
                  frontend: torch.nn.Module | None) -> torch.Tensor:
    """What the training step makes of a batch on its device, without gradients: the corruption and
    dither of ``augment.compute: device`` (``x`` a dict of plans, :mod:`.device_augment`), then the
    features of ``features.compute: device`` (``frontend``, :func:`device_frontend`)."""
    with torch.no_grad():
        if isinstance(x, dict):
            x = device_augment.apply(x["wave"], x["plan"], x["key"], feat_cfg.sample_rate,
                                     aug_cfg.reverb_norm, feat_cfg.dither)
        if frontend is not None:
            x = frontend(x)
    return x


def worker_init_fn(worker_id: int) -> None:
    """DataLoader worker setup: one torch thread per worker (the workers already run in parallel)."""
    torch.set_num_threads(1)


# ----------------------------------------------------------------------------------------------------
# Batch-level transforms (training step, on the device)


def cmn(x: torch.Tensor) -> torch.Tensor:
    """Mean over time subtracted per dimension, for each item of a ``(B, T, F)`` batch."""
    return x - x.mean(dim=1, keepdim=True)


def spec_augment(x: torch.Tensor, cfg: AugConfig, generator: torch.Generator) -> torch.Tensor:
    """SpecAugment with per-sample masks (``x`` is ``(B, T, F)``): with probability ``cfg.spec_aug_prob``
    a sample gets one time band of 1..``spec_max_t`` frames and one feature band of 1..``spec_max_f``
    dims set to 0, at uniform positions. On MFCC the feature band is a set of cepstral dimensions, not a
    frequency band. Returns a new tensor (``x`` itself if ``cfg.spec_aug`` is off)."""
    if not cfg.spec_aug:
        return x
    b, t, f = x.shape
    g = dict(generator=generator, device=generator.device)
    on = torch.rand(b, **g) < cfg.spec_aug_prob
    wt = torch.randint(1, min(cfg.spec_max_t, t) + 1, (b,), **g)
    wf = torch.randint(1, min(cfg.spec_max_f, f) + 1, (b,), **g)
    t0 = (torch.rand(b, **g) * (t - wt + 1)).long()
    f0 = (torch.rand(b, **g) * (f - wf + 1)).long()
    on, wt, wf, t0, f0 = (a.to(x.device) for a in (on, wt, wf, t0, f0))
    at = torch.arange(t, device=x.device)
    af = torch.arange(f, device=x.device)
    mt = (at >= t0[:, None]) & (at < (t0 + wt)[:, None]) & on[:, None]
    mf = (af >= f0[:, None]) & (af < (f0 + wf)[:, None]) & on[:, None]
    return x.masked_fill(mt[:, :, None] | mf[:, None, :], 0.0)


def utterance_features(entry: str, vad_entry: str | None, feat_cfg: FeatureConfig, utt: str,
                       where: str = "") -> np.ndarray:
    """MFCC ``(T, F)`` float32 of a whole utterance for extraction: voiced samples if ``feat_cfg.use_vad``
    (``vad_entry`` required then), dither 0, no CMN (the caller applies it), the samples tiled so that
    ``T >= 50``. ``where`` (``wav.scp:line``) prefixes errors; ``utt`` names the VAD in them."""
    if feat_cfg.use_vad and vad_entry is None:
        raise DataError(f"{where + ': ' if where else ''}no VAD entry for {utt} but use_vad is set")
    cfg = feat_cfg.mfcc()
    x = load_voiced(entry, vad_entry if feat_cfg.use_vad else None, cfg, where, f"vad.scp: {utt}")
    n_min = samples_for_frames(MIN_EXTRACT_FRAMES, cfg)
    if x.size < n_min:
        x = x[np.arange(n_min) % x.size]
    return compute_mfcc(x, int(cfg.sample_frequency), cfg, utt, where, kind=feat_cfg.kind)
