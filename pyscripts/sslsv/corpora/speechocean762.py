"""speechocean762 (OpenSLR 101) as a speaker-verification corpus.

Two source layouts are read:

* the official distribution: ``WAVE/SPEAKERnnnn/*.WAV`` plus Kaldi-style lists
  ``train/{wav.scp,utt2spk,...}`` and ``test/{...}``, whose ``wav.scp`` values are paths relative to the
  corpus root (``WAVE/SPEAKER0001/000010011.WAV``);
* a FLAC copy of one half: ``audio/<utt>.flac`` plus ``utt2spk``.

With both official halves present the official split is kept (their speakers are disjoint); with one
half, its speakers are split into training and test speakers by a fixed seed. Official utterance ids
(``000010011``) begin with the zero-padded speaker id (``0001``) but not with the speaker id followed by
``-``, so they are written as ``<spk>-<utt>`` (``0001-000010011``), as Kaldi requires.
"""

from __future__ import annotations

import os
import shlex
from pathlib import Path

from ..tables import DataError, read_map, read_scp
from .common import prefix_utt, split_speakers, summary, utt2dur_of, write_corpus

NAME = "speechocean762"
HALVES = ("train", "test")


def _official_half(src: Path, half: str) -> tuple[dict[str, str], dict[str, str]]:
    """Read ``<src>/<half>/{wav.scp,utt2spk}``; return ``(wav_scp, utt2spk)`` with prefixed ids and
    ``wav.scp`` paths resolved against ``src``."""
    scp_path, u2s_path = src / half / "wav.scp", src / half / "utt2spk"
    scp, u2s = read_scp(scp_path), read_map(u2s_path)
    missing = [u for u in scp if u not in u2s]
    if missing:
        raise DataError(f"{u2s_path}: no speaker for utterance {missing[0]!r} of {scp_path}")
    extra = [u for u in u2s if u not in scp]
    if extra:
        raise DataError(f"{scp_path}: no audio for utterance {extra[0]!r} of {u2s_path}")
    wav_scp: dict[str, str] = {}
    utt2spk: dict[str, str] = {}
    for lineno, (utt, value) in enumerate(scp.items(), 1):
        if not value.endswith("|"):
            path = Path(value) if os.path.isabs(value) else src / value
            if not path.is_file():
                raise DataError(f"{scp_path}:{lineno}: audio file not found: {path}")
            value = os.path.abspath(path)
        key = prefix_utt(u2s[utt], utt)
        wav_scp[key] = value
        utt2spk[key] = u2s[utt]
    return wav_scp, utt2spk


def _flac_copy(src: Path) -> tuple[dict[str, str], dict[str, str]]:
    """Read ``<src>/utt2spk`` and ``<src>/audio/<utt>.flac``; return ``(wav_scp, utt2spk)`` with
    prefixed ids and absolute file paths."""
    u2s_path = src / "utt2spk"
    wav_scp: dict[str, str] = {}
    utt2spk: dict[str, str] = {}
    for lineno, (utt, spk) in enumerate(read_map(u2s_path).items(), 1):
        path = src / "audio" / f"{utt}.flac"
        if not path.is_file():
            raise DataError(f"{u2s_path}:{lineno}: audio file not found: {path}")
        key = prefix_utt(spk, utt)
        wav_scp[key] = os.path.abspath(path)
        utt2spk[key] = spk
    return wav_scp, utt2spk


def load(src: str | os.PathLike) -> tuple[dict[str, str], dict[str, str], dict[str, list[str]] | None]:
    """Read a speechocean762 source directory (either layout).

    Returns ``(wav_scp, utt2spk, halves)``: file paths by prefixed utterance id, speakers, and the
    speakers of each official half (``{"train": [...], "test": [...]}``) when both halves are present,
    else None.
    """
    src = Path(src)
    if not src.is_dir():
        raise DataError(f"{src}: no such directory")
    present = [h for h in HALVES if (src / h / "wav.scp").is_file()]
    if present:
        wav_scp: dict[str, str] = {}
        utt2spk: dict[str, str] = {}
        spk_of_half: dict[str, list[str]] = {}
        for half in present:
            scp, u2s = _official_half(src, half)
            dup = [u for u in scp if u in wav_scp]
            if dup:
                raise DataError(f"{src / half / 'wav.scp'}: utterance {dup[0]!r} also in another half")
            wav_scp.update(scp)
            utt2spk.update(u2s)
            spk_of_half[half] = sorted(set(u2s.values()))
        if len(present) == 2:
            shared = set(spk_of_half["train"]) & set(spk_of_half["test"])
            if shared:
                raise DataError(f"{src}: official train and test lists share speakers, "
                                f"e.g. {sorted(shared)[:5]}")
            return wav_scp, utt2spk, spk_of_half
        return wav_scp, utt2spk, None
    if (src / "utt2spk").is_file() and (src / "audio").is_dir():
        wav_scp, utt2spk = _flac_copy(src)
        return wav_scp, utt2spk, None
    raise DataError(f"{src}: not a speechocean762 directory: expected train/wav.scp and/or test/wav.scp "
                    "(official layout) or utt2spk with audio/<utt>.flac (FLAC copy)")


def pipe_of(path: str) -> str:
    """Kaldi pipe that decodes a non-WAV file to WAV with sox."""
    return f"sox {shlex.quote(path)} -t wav - |"


def prepare(src: str | os.PathLike, data_root: str | os.PathLike, num_test_spk: int = 25, seed: int = 0,
            use_pipes: bool = False, nj: int = 1, name: str = NAME) -> str:
    """Write ``<data_root>/<name>_{train,test}`` (and the test trials) from a speechocean762 source;
    return a one-line summary. ``use_pipes`` writes ``sox <f> -t wav - |`` for non-WAV files (FLAC),
    which Kaldi binaries need; WAV files are always written as paths."""
    wav_scp, utt2spk, halves = load(src)
    utt2dur = utt2dur_of(wav_scp, nj, where=f"{src}")
    if halves is not None:
        train_spk, test_spk = halves["train"], halves["test"]
    else:
        train_spk, test_spk = split_speakers(utt2spk.values(), num_test_spk, seed)
    if use_pipes:
        wav_scp = {u: pipe_of(p) if not p.endswith("|") and not p.lower().endswith(".wav") else p
                   for u, p in wav_scp.items()}
    train_dir, test_dir = write_corpus(data_root, name, wav_scp, utt2spk, utt2dur, test_spk,
                                       train_speakers=train_spk)
    split = ("official train/test split" if halves is not None
             else f"{len(test_spk)} test speakers, seed {seed}")
    return f"{split}; " + summary(train_dir, test_dir, utt2spk, utt2dur)
