"""Kaldi option files (``conf/mfcc.conf``, ``conf/vad.conf``): one ``--name=value`` per line, ``#``
starts a comment, blank lines are ignored, a bare ``--flag`` means ``--flag=true``, and ``_`` in a
name is read as ``-`` (as Kaldi's ParseOptions does). Every option the Kaldi binaries
``compute-mfcc-feats`` and ``compute-vad`` register is accepted; an unknown name or a malformed value
is an error naming ``file:line``. Absent options take Kaldi's *binary* defaults, not those of
kaldi-native-fbank, which differ (its dither is 3e-5, Kaldi's 1.0).
"""

from __future__ import annotations

import dataclasses
import math
import os
from collections.abc import Iterable
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, TypeVar

from ..tables import DataError

WINDOW_TYPES = ("hamming", "hanning", "povey", "rectangular", "sine", "blackman")


@dataclass(frozen=True)
class MfccConfig:
    """Options of Kaldi's ``compute-mfcc-feats`` with the binary's defaults (field ``a_b`` = ``--a-b``)."""

    # FrameExtractionOptions
    sample_frequency: float = 16000.0
    frame_shift: float = 10.0           # ms
    frame_length: float = 25.0          # ms
    preemphasis_coefficient: float = 0.97
    remove_dc_offset: bool = True
    dither: float = 1.0
    window_type: str = "povey"
    round_to_power_of_two: bool = True
    blackman_coeff: float = 0.42
    snip_edges: bool = True
    allow_downsample: bool = False
    allow_upsample: bool = False
    max_feature_vectors: int = -1       # online decoding only; no effect on whole-file features
    # MelBanksOptions
    num_mel_bins: int = 23
    low_freq: float = 20.0
    high_freq: float = 0.0              # <= 0: offset from Nyquist
    vtln_low: float = 100.0
    vtln_high: float = -500.0
    debug_mel: bool = False             # accepted; knf prints no mel-bank debug output
    # MfccOptions
    num_ceps: int = 13
    use_energy: bool = True
    energy_floor: float = 0.0
    raw_energy: bool = True
    cepstral_lifter: float = 22.0
    htk_compat: bool = False
    # compute-mfcc-feats program options
    subtract_mean: bool = False
    vtln_warp: float = 1.0
    min_duration: float = 0.0
    channel: int = -1
    output_format: str = "kaldi"
    # options every Kaldi binary has (accepted so Kaldi config files load; no effect here)
    verbose: int = 0
    print_args: bool = True

    def check(self, where: str = "") -> None:
        """Reject option values the Kaldi binary rejects (or that kaldi-native-fbank cannot honour)."""
        p = f"{where}: " if where else ""
        nyq = 0.5 * self.sample_frequency
        if self.sample_frequency <= 0:
            raise DataError(f"{p}--sample-frequency must be > 0, got {self.sample_frequency}")
        shift = int(self.sample_frequency * 0.001 * self.frame_shift)
        length = int(self.sample_frequency * 0.001 * self.frame_length)
        if shift <= 0 or length <= 1:
            raise DataError(f"{p}frame shift ({shift} samples) and length ({length} samples) must be > 0 "
                            "and the length > 1; check --frame-shift/--frame-length/--sample-frequency")
        if self.window_type not in WINDOW_TYPES:
            raise DataError(f"{p}invalid --window-type={self.window_type} "
                            f"(one of {', '.join(WINDOW_TYPES)})")
        if self.dither < 0:
            raise DataError(f"{p}--dither must be >= 0, got {self.dither}")
        if self.num_mel_bins < 3:
            raise DataError(f"{p}--num-mel-bins must be at least 3, got {self.num_mel_bins}")
        if not 1 <= self.num_ceps <= self.num_mel_bins:
            raise DataError(f"{p}--num-ceps={self.num_ceps} must be in 1..num-mel-bins ({self.num_mel_bins})")
        high = self.high_freq if self.high_freq > 0 else nyq + self.high_freq
        if self.low_freq < 0 or self.low_freq >= nyq or high <= 0 or high > nyq or high <= self.low_freq:
            raise DataError(f"{p}bad mel band: --low-freq={self.low_freq} --high-freq={self.high_freq} "
                            f"(effective {self.low_freq}..{high} Hz) with Nyquist {nyq} Hz")
        if self.energy_floor < 0:
            raise DataError(f"{p}--energy-floor must be >= 0, got {self.energy_floor}")
        if self.vtln_warp != 1.0:
            raise DataError(f"{p}--vtln-warp={self.vtln_warp}: VTLN warping is not supported "
                            "(kaldi-native-fbank computes unwarped mel banks); use 1.0")
        if self.channel not in (-1, 0):
            raise DataError(f"{p}--channel={self.channel}: only mono audio is read; select the channel in "
                            "wav.scp instead (e.g. 'sox in.wav -t wav - remix 2 |')")
        if self.output_format != "kaldi":
            raise DataError(f"{p}--output-format={self.output_format}: only 'kaldi' is supported")
        if self.min_duration < 0:
            raise DataError(f"{p}--min-duration must be >= 0, got {self.min_duration}")
        _check_mel_bins(self, p)

    @property
    def window_shift_samples(self) -> int:
        """Frame shift in samples, truncated toward zero as Kaldi does."""
        return int(self.sample_frequency * 0.001 * self.frame_shift)

    @property
    def window_size_samples(self) -> int:
        """Frame length in samples, truncated toward zero as Kaldi does."""
        return int(self.sample_frequency * 0.001 * self.frame_length)

    @property
    def padded_window_size(self) -> int:
        """FFT size: the next power of two of the frame length if ``round_to_power_of_two``."""
        n = self.window_size_samples
        return 1 << (n - 1).bit_length() if self.round_to_power_of_two else n


def _check_mel_bins(cfg: MfccConfig, prefix: str) -> None:
    """Kaldi's fatal 'num-mel-bins too large' check: every triangle must cover an FFT bin."""
    n_fft = cfg.padded_window_size
    nyq = 0.5 * cfg.sample_frequency
    high = cfg.high_freq if cfg.high_freq > 0 else nyq + cfg.high_freq

    def mel(f: float) -> float:
        return 1127.0 * math.log(1.0 + f / 700.0)

    lo, hi = mel(cfg.low_freq), mel(high)
    delta = (hi - lo) / (cfg.num_mel_bins + 1)
    fft_mels = [mel(k * cfg.sample_frequency / n_fft) for k in range(n_fft // 2)]
    for b in range(cfg.num_mel_bins):
        left, right = lo + b * delta, lo + (b + 2) * delta
        if not any(left < m < right for m in fft_mels):
            raise DataError(f"{prefix}--num-mel-bins={cfg.num_mel_bins} is too large for "
                            f"{n_fft}-point FFT over {cfg.low_freq}..{high} Hz: mel bin {b} is empty")


@dataclass(frozen=True)
class VadConfig:
    """Options of Kaldi's ``compute-vad`` with the binary's defaults."""

    vad_energy_threshold: float = 5.0
    vad_energy_mean_scale: float = 0.5
    vad_frames_context: int = 0
    vad_proportion_threshold: float = 0.6
    omit_unvoiced_utts: bool = False
    verbose: int = 0
    print_args: bool = True

    def check(self, where: str = "") -> None:
        """Reject values Kaldi's VadEnergyOptions reject."""
        p = f"{where}: " if where else ""
        if self.vad_energy_mean_scale < 0:
            raise DataError(f"{p}--vad-energy-mean-scale must be >= 0, got {self.vad_energy_mean_scale}")
        if self.vad_frames_context < 0:
            raise DataError(f"{p}--vad-frames-context must be >= 0, got {self.vad_frames_context}")
        if not 0.0 < self.vad_proportion_threshold < 1.0:
            raise DataError(f"{p}--vad-proportion-threshold must be in (0, 1), "
                            f"got {self.vad_proportion_threshold}")


C = TypeVar("C", MfccConfig, VadConfig)


def _to_bool(value: str, where: str, name: str) -> bool:
    v = value.lower()
    if v in ("true", "t", "1", ""):
        return True
    if v in ("false", "f", "0"):
        return False
    raise DataError(f"{where}: --{name} expects true or false, got {value!r}")


def _convert(kind: type, value: str, where: str, name: str) -> Any:
    if kind is bool:
        return _to_bool(value, where, name)
    if kind is int:
        try:
            return int(value, 10)
        except ValueError:
            raise DataError(f"{where}: --{name} expects an integer, got {value!r}") from None
    if kind is float:
        try:
            x = float(value)
        except ValueError:
            raise DataError(f"{where}: --{name} expects a number, got {value!r}") from None
        if math.isnan(x):
            raise DataError(f"{where}: --{name} expects a number, got {value!r}")
        return x
    return value


def parse_option_lines(cls: type[C], lines: Iterable[tuple[str, str]], base: C | None = None) -> C:
    """Apply ``(where, line)`` pairs holding Kaldi ``--name=value`` options to ``base`` (default: the
    binary defaults); later lines win. Comments and blank lines are skipped."""
    kinds = {f.name.replace("_", "-"): f.type for f in fields(cls)}
    types = {"bool": bool, "int": int, "float": float, "str": str}
    values: dict[str, Any] = {}
    for where, raw in lines:
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        if not line.startswith("--") or len(line) == 2:
            raise DataError(f"{where}: expected '--name=value', got {raw.strip()!r}")
        name, eq, value = line[2:].partition("=")
        name = name.strip().replace("_", "-")
        if " " in name or "\t" in name:
            raise DataError(f"{where}: expected '--name=value' without spaces, got {raw.strip()!r}")
        if name == "config":
            raise DataError(f"{where}: --config inside an option file is not supported")
        if name not in kinds:
            raise DataError(f"{where}: unknown option --{name} for {cls.__name__} "
                            f"(known: {', '.join('--' + k for k in kinds)})")
        kind = types[kinds[name]] if isinstance(kinds[name], str) else kinds[name]
        if not eq and kind is not bool:
            raise DataError(f"{where}: option --{name} needs a value (--{name}=VALUE)")
        values[name.replace("-", "_")] = _convert(kind, value.strip(), where, name)
    return dataclasses.replace(base if base is not None else cls(), **values)


def read_option_file(cls: type[C], path: str | os.PathLike, base: C | None = None) -> C:
    """Read a Kaldi option file into ``cls``; errors name ``path:line``."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: no such option file")
    with open(path, encoding="utf-8") as f:
        lines = [(f"{path}:{i}", line) for i, line in enumerate(f, 1)]
    return parse_option_lines(cls, lines, base)


def read_mfcc_config(path: str | os.PathLike | None, overrides: Iterable[str] = ()) -> MfccConfig:
    """MFCC options from a config file (or the defaults if ``path`` is None) plus command-line
    ``--name=value`` overrides, checked as the Kaldi binary checks them."""
    cfg = read_option_file(MfccConfig, path) if path is not None else MfccConfig()
    cfg = parse_option_lines(MfccConfig, (("command line", o) for o in overrides), cfg)
    cfg.check(str(path) if path is not None else "options")
    return cfg


def read_vad_config(path: str | os.PathLike | None, overrides: Iterable[str] = ()) -> VadConfig:
    """VAD options from a config file (or the defaults) plus ``--name=value`` overrides, checked."""
    cfg = read_option_file(VadConfig, path) if path is not None else VadConfig()
    cfg = parse_option_lines(VadConfig, (("command line", o) for o in overrides), cfg)
    cfg.check(str(path) if path is not None else "options")
    return cfg


def format_options(cfg: MfccConfig | VadConfig) -> list[str]:
    """All options as ``--name=value`` lines (booleans as true/false), e.g. for logs."""
    out = []
    for f in fields(cfg):
        v = getattr(cfg, f.name)
        out.append(f"--{f.name.replace('_', '-')}={str(v).lower() if isinstance(v, bool) else v}")
    return out
