"""Checking the audio that ``wav.scp`` names, before any long computation reads it.

A file entry is checked from its header only (``sslsv.audio.audio_info``): it must exist, be
readable, mono, non-empty, at the expected sample rate and at least ``min_samples`` long, and a WAV
must hold the data its header declares (a truncated copy is otherwise read as a shorter file, with no
word). Running a pipe entry costs as much as decoding the audio, so by default a pipe is checked
statically: every program in it must be on ``PATH`` and every argument that looks like a file must
exist; ``run_pipes`` runs them.
"""

from __future__ import annotations

import os
import shlex
import shutil
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor

from ..audio import audio_info, is_pipe, read_audio
from ..tables import DataError

_SEPARATORS = {"|", "||", "&", "&&", ";", "(", ")", "|&"}
_REDIRECTS = {">", ">>", "<", ">&", "<&", "&>"}
_BUILTINS = {"exec", "command", "eval", "time", "echo", "printf", "cd", "true", "false", ":", "test", "["}
_AUDIO_EXT = (".wav", ".flac", ".mp3", ".m4a", ".aac", ".ogg", ".opus", ".sph", ".nist", ".aif", ".aiff",
              ".raw", ".pcm", ".webm", ".mp4", ".wma", ".au")


def pipe_problems(entry: str) -> list[str]:
    """Static check of a ``... |`` command: programs on PATH, file-like arguments present."""
    cmd = entry.strip()[:-1]
    lex = shlex.shlex(cmd, posix=True, punctuation_chars=True)
    lex.whitespace_split = True
    try:
        tokens = list(lex)
    except ValueError as e:
        return [f"cannot parse pipe command {cmd!r}: {e}"]
    if not tokens:
        return ["empty pipe command"]
    out: list[str] = []
    expect_program = True
    after_redirect = False
    for tok in tokens:
        if tok in _SEPARATORS:
            expect_program = True
            continue
        if tok in _REDIRECTS:
            after_redirect = tok.startswith(">") or tok == "&>"
            continue
        if after_redirect:          # an output file need not exist
            after_redirect = False
            continue
        if expect_program:
            if "=" in tok and not tok.startswith("=") and "/" not in tok.split("=", 1)[0]:
                continue            # VAR=value prefix
            expect_program = False
            if "/" in tok:
                if not (os.path.isfile(tok) and os.access(tok, os.X_OK)):
                    out.append(f"pipe program not found or not executable: {tok}")
            elif shutil.which(tok) is None and tok not in _BUILTINS:
                out.append(f"pipe program not found on PATH: {tok}")
            continue
        if tok.startswith("-") or "://" in tok:
            continue
        if ("/" in tok or tok.lower().endswith(_AUDIO_EXT)) and not os.path.exists(tok):
            out.append(f"file named in pipe not found: {tok}")
    return out


def _check_samples(num: int, rate: int, channels: int, sample_rate: int | None, min_samples: int
                   ) -> str | None:
    if channels != 1:
        return f"{channels} channels; the recipe needs mono audio"
    if num <= 0:
        return "no samples (empty audio)"
    if sample_rate is not None and rate != sample_rate:
        return f"sample rate {rate} Hz, expected {sample_rate} Hz"
    if num < min_samples:
        return f"only {num} samples, fewer than the minimum {min_samples}"
    return None


def wav_shortfall(path: str) -> str | None:
    """For a RIFF/WAVE file, compare the size its ``data`` chunk header declares with the bytes the file
    holds after it; return a message when the header promises more than the file has (a truncated copy:
    libsndfile then silently returns the samples present, as if the file were shorter), else None.
    Streaming placeholders (size 0 or 0xFFFFFFFF) and non-WAV files are not judged."""
    import struct

    try:
        size = os.stat(path).st_size
        with open(path, "rb") as f:
            head = f.read(12)
            if len(head) < 12 or head[:4] != b"RIFF" or head[8:12] != b"WAVE":
                return None
            block = None
            while True:
                ch = f.read(8)
                if len(ch) < 8:
                    return None
                cid, clen = ch[:4], struct.unpack("<I", ch[4:])[0]
                if cid == b"fmt ":
                    fmt = f.read(clen)
                    if len(fmt) >= 14:
                        block = struct.unpack("<H", fmt[12:14])[0]
                    if clen % 2:
                        f.seek(1, os.SEEK_CUR)
                    continue
                if cid == b"data":
                    if clen in (0, 0xFFFFFFFF):
                        return None
                    have = size - f.tell()
                    if have >= clen:
                        return None
                    block = block or 1
                    return (f"WAV header promises {clen // block} samples ({clen} bytes of data) but the "
                            f"file holds {have // block} (truncated copy?)")
                f.seek(clen + clen % 2, os.SEEK_CUR)
    except OSError:
        return None


def check_entry(entry: str, sample_rate: int | None = None, min_samples: int = 0,
                run_pipes: bool = False) -> str | None:
    """Check one ``wav.scp`` value; return why it is unusable, or None if it is fine."""
    if is_pipe(entry):
        if not run_pipes:
            problems = pipe_problems(entry)
            return "; ".join(problems) if problems else None
        try:
            x, rate = read_audio(entry)
        except DataError as e:
            return str(e)
        return _check_samples(len(x), rate, 1, sample_rate, min_samples)
    path = entry.strip()
    try:
        size = os.stat(path).st_size
    except OSError:
        return f"audio file not found: {path}"
    if size == 0:
        return f"empty file (0 bytes): {path}"
    try:
        num, rate, channels = audio_info(path)
    except DataError as e:
        return str(e)
    return _check_samples(num, rate, channels, sample_rate, min_samples) or wav_shortfall(path)


def check_audio(entries: Iterable[tuple[str, str]], sample_rate: int | None = None, min_samples: int = 0,
                run_pipes: bool = False, jobs: int | None = None) -> dict[str, str]:
    """Check ``(utt, wav.scp value)`` pairs; return ``{utt: why}`` for the bad ones. ``jobs`` threads
    (default: one, or one per core with ``run_pipes``)."""
    items = list(entries)
    if not items:
        return {}
    # Header reads are fastest in one thread (measured); pipes run as processes, one per core.
    jobs = jobs or ((os.cpu_count() or 1) if run_pipes else 1)

    def one(item: tuple[str, str]) -> str | None:
        return check_entry(item[1], sample_rate, min_samples, run_pipes)

    if jobs == 1 or len(items) < 64:
        results = list(map(one, items))
    else:
        with ThreadPoolExecutor(jobs) as pool:
            results = list(pool.map(one, items, chunksize=max(1, min(256, len(items) // (4 * jobs)))))
    return {utt: why for (utt, _), why in zip(items, results, strict=True) if why is not None}
