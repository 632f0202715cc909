"""Kaldi ``compute-mfcc-feats`` through kaldi-native-fbank (knf), a C++ port of Kaldi's feature code.

Every Kaldi option is mapped onto knf's ``MfccOptions`` explicitly, because knf's defaults differ from
the Kaldi binary's. The one thing that cannot match Kaldi bit for bit is dither: Kaldi draws it from
glibc ``rand()`` per frame. Here dither is deterministic instead: Gaussian noise of standard deviation
``dither`` (int16 scale) is added once to the waveform, from a generator seeded by a hash of the
utterance id, and knf's own dither is switched off. Features are therefore reproducible run to run
(a killed and resumed job writes the same bytes); with ``--dither=0`` they equal Kaldi's to float32
rounding. The difference from Kaldi (noise per waveform sample instead of per frame, so overlapping
frames share it) is statistically immaterial: both add white noise of the same level.
"""

from __future__ import annotations

import hashlib
from fractions import Fraction

import kaldi_native_fbank as knf
import numpy as np

from ..tables import DataError
from .kaldi_options import MfccConfig


def knf_options(cfg: MfccConfig) -> knf.MfccOptions:
    """Build knf options from a Kaldi config, setting every field (knf's own dither is 0)."""
    o = knf.MfccOptions()
    fo = o.frame_opts
    fo.samp_freq = float(cfg.sample_frequency)
    fo.frame_shift_ms = float(cfg.frame_shift)
    fo.frame_length_ms = float(cfg.frame_length)
    fo.dither = 0.0
    fo.preemph_coeff = float(cfg.preemphasis_coefficient)
    fo.remove_dc_offset = bool(cfg.remove_dc_offset)
    fo.window_type = cfg.window_type
    fo.round_to_power_of_two = bool(cfg.round_to_power_of_two)
    fo.blackman_coeff = float(cfg.blackman_coeff)
    fo.snip_edges = bool(cfg.snip_edges)
    mo = o.mel_opts
    mo.num_bins = int(cfg.num_mel_bins)
    mo.low_freq = float(cfg.low_freq)
    mo.high_freq = float(cfg.high_freq)
    mo.vtln_low = float(cfg.vtln_low)
    mo.vtln_high = float(cfg.vtln_high)
    mo.debug_mel = bool(cfg.debug_mel)
    mo.htk_mode = False
    mo.is_librosa = False
    o.num_ceps = int(cfg.num_ceps)
    o.use_energy = bool(cfg.use_energy)
    o.energy_floor = float(cfg.energy_floor)
    o.raw_energy = bool(cfg.raw_energy)
    o.cepstral_lifter = float(cfg.cepstral_lifter)
    o.htk_compat = bool(cfg.htk_compat)
    return o


def frame_length_samples(cfg: MfccConfig) -> int:
    """Samples in one frame (400 at 16 kHz, 25 ms); shorter audio is rejected as too short."""
    return cfg.window_size_samples


def num_frames(num_samples: int, cfg: MfccConfig) -> int:
    """Kaldi's ``NumFrames``: frames produced from ``num_samples`` samples in either snip mode."""
    shift, length = cfg.window_shift_samples, cfg.window_size_samples
    if cfg.snip_edges:
        return 0 if num_samples < length else 1 + (num_samples - length) // shift
    return (num_samples + shift // 2) // shift


def dither_seed(utt_id: str) -> int:
    """Seed of an utterance's dither noise: the first 8 bytes of SHA-256 of its id."""
    return int.from_bytes(hashlib.sha256(utt_id.encode()).digest()[:8], "little")


def resample(samples: np.ndarray, rate: int, new_rate: float) -> np.ndarray:
    """Polyphase resampling (Kaldi's --allow-downsample/--allow-upsample; not Kaldi's exact filter)."""
    from scipy.signal import resample_poly

    frac = Fraction(int(round(new_rate)), int(rate))
    return resample_poly(samples.astype(np.float64), frac.numerator, frac.denominator).astype(np.float32)


def knf_fbank_options(cfg: MfccConfig) -> knf.FbankOptions:
    """knf options of Kaldi's ``compute-fbank-feats`` sharing the frame and mel options of ``cfg``
    (log mel energies of the power spectrum, no energy column: Kaldi's and WeSpeaker's defaults)."""
    m = knf_options(cfg)
    o = knf.FbankOptions()
    for name in ("samp_freq", "frame_shift_ms", "frame_length_ms", "dither", "preemph_coeff",
                 "remove_dc_offset", "window_type", "round_to_power_of_two", "blackman_coeff", "snip_edges"):
        setattr(o.frame_opts, name, getattr(m.frame_opts, name))
    for name in ("num_bins", "low_freq", "high_freq", "vtln_low", "vtln_high", "debug_mel", "htk_mode",
                 "is_librosa"):
        setattr(o.mel_opts, name, getattr(m.mel_opts, name))
    o.use_energy = False
    o.use_log_fbank = True
    o.use_power = True
    o.energy_floor = float(cfg.energy_floor)
    o.raw_energy = bool(cfg.raw_energy)
    o.htk_compat = bool(cfg.htk_compat)
    return o


def compute_fbank(samples: np.ndarray, rate: int, cfg: MfccConfig, utt_id: str = "",
                  where: str = "") -> np.ndarray:
    """Log mel filterbank energies (T x num_mel_bins, float32), as Kaldi's ``compute-fbank-feats`` with
    the frame and mel options of ``cfg``; dither, resampling and ``--subtract-mean`` as compute_mfcc."""
    return compute_mfcc(samples, rate, cfg, utt_id, where, kind="fbank")


def compute_mfcc(samples: np.ndarray, rate: int, cfg: MfccConfig, utt_id: str = "",
                 where: str = "", kind: str = "mfcc") -> np.ndarray:
    """MFCC matrix (T x num_ceps, float32) of int16-scale ``samples`` at ``rate`` Hz, as Kaldi's
    ``compute-mfcc-feats`` computes it (including ``--subtract-mean``).

    A sample rate different from ``--sample-frequency`` is an error unless ``--allow-downsample`` /
    ``--allow-upsample`` permits resampling, as in Kaldi. Dither noise is seeded from ``utt_id``.
    ``where`` (``wav.scp:line``) prefixes errors. Returns a (0, num_ceps) matrix for audio too short
    for one frame; callers decide whether that is an error.
    """
    prefix = f"{where}: " if where else ""
    x = np.asarray(samples, dtype=np.float32)
    if x.ndim != 1:
        raise DataError(f"{prefix}expected mono samples, got shape {x.shape}")
    if rate != cfg.sample_frequency:
        if (rate > cfg.sample_frequency and cfg.allow_downsample) or \
                (rate < cfg.sample_frequency and cfg.allow_upsample):
            x = resample(x, rate, cfg.sample_frequency)
        else:
            flag = "--allow-downsample" if rate > cfg.sample_frequency else "--allow-upsample"
            raise DataError(f"{prefix}sample rate {rate} Hz differs from --sample-frequency="
                            f"{cfg.sample_frequency:g} of the MFCC config (resample the audio, e.g. "
                            f"'sox in.wav -r {cfg.sample_frequency:g} -t wav - |' in wav.scp, or set "
                            f"{flag}=true)")
    if cfg.dither > 0:
        rng = np.random.default_rng(dither_seed(utt_id))
        x = x + (cfg.dither * rng.standard_normal(x.shape[0])).astype(np.float32)
    m = knf.OnlineFbank(knf_fbank_options(cfg)) if kind == "fbank" else knf.OnlineMfcc(knf_options(cfg))
    dim = int(cfg.num_mel_bins) if kind == "fbank" else int(cfg.num_ceps)
    m.accept_waveform(float(cfg.sample_frequency), x)
    m.input_finished()
    t = m.num_frames_ready
    if t == 0:
        return np.zeros((0, dim), dtype=np.float32)
    # knf has no batch getter; copying rows out is ~4 % of the cost (the frames are computed in C++
    # by accept_waveform), and map() keeps the loop in C.
    feats = np.stack(list(map(m.get_frame, range(t))))
    if cfg.subtract_mean:
        feats = (feats - feats.mean(axis=0, dtype=np.float64)).astype(np.float32)
    return feats
