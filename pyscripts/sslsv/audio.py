"""Reading ``wav.scp`` entries: a file path (WAV, FLAC, anything libsndfile reads) or a Kaldi pipe
command ending in ``|`` (``sox x.flac -t wav - |``, ``ffmpeg -i x.m4a -f wav - |``).

Samples are returned as float32 on Kaldi's int16 scale (±32768), which is what Kaldi's feature code,
its energy VAD threshold and its dither assume.
"""

from __future__ import annotations

import io
import os
import subprocess

import numpy as np
import soundfile as sf

from .tables import DataError


def is_pipe(entry: str) -> bool:
    """True for a Kaldi extended filename that is a command (ends in ``|``)."""
    return entry.rstrip().endswith("|")


def read_audio(entry: str, where: str = "") -> tuple[np.ndarray, int]:
    """Read one ``wav.scp`` value; return ``(samples, sample_rate)``, samples float32 on the int16 scale.

    ``where`` (e.g. ``data/train/wav.scp:12``) prefixes every error message. Multi-channel audio,
    empty audio, a missing or corrupt file and a failing pipe are errors.
    """
    prefix = f"{where}: " if where else ""
    entry = entry.strip()
    if is_pipe(entry):
        cmd = entry[:-1].strip()
        proc = subprocess.run(["bash", "-o", "pipefail", "-c", cmd], capture_output=True)
        if proc.returncode != 0:
            err = proc.stderr.decode(errors="replace").strip().splitlines()
            tail = err[-1] if err else ""
            raise DataError(f"{prefix}pipe failed with exit code {proc.returncode}: {cmd!r} {tail}")
        source: object = io.BytesIO(proc.stdout)
        if not proc.stdout:
            raise DataError(f"{prefix}pipe produced no audio: {cmd!r}")
    else:
        source = entry
    try:
        data, sr = sf.read(source, dtype="int16", always_2d=True)
    except FileNotFoundError as e:
        raise DataError(f"{prefix}audio file not found: {entry}") from e
    except (sf.LibsndfileError, RuntimeError, ValueError) as e:
        if not is_pipe(entry) and not os.path.exists(entry):
            raise DataError(f"{prefix}audio file not found: {entry}") from e
        raise DataError(f"{prefix}cannot decode audio {entry!r}: {e}") from e
    if data.shape[1] != 1:
        raise DataError(f"{prefix}{entry!r} has {data.shape[1]} channels; the recipe needs mono audio "
                        "(e.g. 'sox in.wav -c 1 -t wav - remix 1 |' in wav.scp)")
    if data.shape[0] == 0:
        raise DataError(f"{prefix}{entry!r} contains no samples")
    return data[:, 0].astype(np.float32), int(sr)


def audio_info(entry: str, where: str = "") -> tuple[int, int, int]:
    """Return ``(num_samples, sample_rate, channels)`` of a file entry without decoding it all;
    pipes are run and decoded."""
    if is_pipe(entry):
        x, sr = read_audio(entry, where)
        return len(x), sr, 1
    prefix = f"{where}: " if where else ""
    try:
        info = sf.info(entry.strip())
    except FileNotFoundError as e:
        raise DataError(f"{prefix}audio file not found: {entry}") from e
    except (sf.LibsndfileError, RuntimeError, ValueError) as e:
        raise DataError(f"{prefix}cannot read audio {entry!r}: {e}") from e
    return int(info.frames), int(info.samplerate), int(info.channels)
