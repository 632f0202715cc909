"""A corpus given as a folder with one sub-folder per speaker: ``<dir>/<spk>/**/<file>.<ext>``.

Utterance ids are ``<spk>-<path below the speaker folder, without extension, / -> ->``, so
``<dir>/alice/day1/003.wav`` is ``alice-day1-003``. Files that libsndfile reads (WAV, FLAC, OGG, ...)
go into ``wav.scp`` as paths, or as ``sox <file> -t wav - |`` pipes for everything but WAV when pipes are
asked for (Kaldi binaries read only WAV); other formats (m4a, aac, opus, ...) always as ``ffmpeg`` pipes.
"""

from __future__ import annotations

import os
import shlex
from pathlib import Path

import soundfile as sf

from ..tables import DataError
from .common import split_speakers, summary, utt2dur_of, write_corpus

NAME = "dir"
DEFAULT_EXTS = ("wav", "flac")


def _sf_exts() -> set[str]:
    return {f.lower() for f in sf.available_formats()} | {"wav", "flac", "ogg"}


def scan(src: str | os.PathLike, exts: tuple[str, ...] = DEFAULT_EXTS
         ) -> tuple[dict[str, str], dict[str, str]]:
    """Find the audio files (extensions ``exts``, any case) of every speaker folder; return
    ``(path_by_utt, utt2spk)``. Audio directly in ``src``, whitespace in an id and two files giving
    the same id are errors naming the files."""
    src = Path(src)
    if not src.is_dir():
        raise DataError(f"{src}: no such directory")
    want = {e.lower().lstrip(".") for e in exts if e.strip()}
    if not want:
        raise DataError("no audio extensions given")

    def is_audio(name: str) -> bool:
        return not name.startswith(".") and "." in name and name.rsplit(".", 1)[1].lower() in want

    paths: dict[str, str] = {}
    utt2spk: dict[str, str] = {}
    for entry in sorted(os.scandir(src), key=lambda e: e.name):
        if entry.name.startswith("."):
            continue
        if entry.is_file():
            if is_audio(entry.name):
                raise DataError(f"{entry.path}: audio directly in {src}; put each speaker's files in a "
                                "sub-folder named after the speaker")
            continue
        if not entry.is_dir():
            continue
        spk = entry.name
        spk_dir = Path(entry.path)
        for dirpath, dirnames, filenames in os.walk(spk_dir):
            dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
            for fn in sorted(filenames):
                if not is_audio(fn):
                    continue
                path = Path(dirpath) / fn
                rel = path.relative_to(spk_dir).with_suffix("").as_posix().replace("/", "-")
                utt = f"{spk}-{rel}"
                if any(c.isspace() for c in utt):
                    raise DataError(f"{path}: whitespace in the speaker folder or file name; Kaldi ids "
                                    "cannot hold it (rename the file or folder)")
                if utt in paths:
                    raise DataError(f"{path}: gives the same utterance id {utt!r} as {paths[utt]}")
                paths[utt] = os.path.abspath(path)
                utt2spk[utt] = spk
    nspk = len(set(utt2spk.values()))
    if nspk < 2:
        raise DataError(f"{src}: found {nspk} speaker folder(s) with audio ({', '.join(sorted(want))}); "
                        "need at least 2 to split speakers into train and test")
    return paths, utt2spk


def ffmpeg_pipe(path: str) -> str:
    return f"ffmpeg -v 8 -i {shlex.quote(path)} -f wav -acodec pcm_s16le - |"


def sox_pipe(path: str) -> str:
    return f"sox {shlex.quote(path)} -t wav - |"


def num_test_of(num_spk: int, num_test_spk: int | None, test_fraction: float | None) -> int:
    """Number of test speakers: ``num_test_spk``, else ``round(test_fraction * num_spk)`` (at least 2);
    the default is a fraction of 0.2."""
    if num_test_spk is not None and test_fraction is not None:
        raise DataError("give either the number of test speakers or the test fraction, not both")
    if num_test_spk is None:
        f = 0.2 if test_fraction is None else test_fraction
        if not 0 < f < 1:
            raise DataError(f"test fraction {f} is not between 0 and 1")
        num_test_spk = min(max(2, round(f * num_spk)), num_spk - 1)
    return num_test_spk


def prepare(src: str | os.PathLike, data_root: str | os.PathLike, name: str = NAME,
            num_test_spk: int | None = None, test_fraction: float | None = None, seed: int = 0,
            exts: tuple[str, ...] = DEFAULT_EXTS, use_pipes: bool = False, nj: int = 1) -> str:
    """Write ``<data_root>/<name>_{train,test}`` and the test trials (every pair of test utterances)
    from a speaker-per-folder corpus; return a one-line summary."""
    paths, utt2spk = scan(src, exts)
    sf_ok = _sf_exts()
    wav_scp: dict[str, str] = {}
    for utt, p in paths.items():
        ext = p.rsplit(".", 1)[1].lower()
        if ext not in sf_ok:
            wav_scp[utt] = ffmpeg_pipe(p)
        elif use_pipes and ext != "wav":
            wav_scp[utt] = sox_pipe(p)
        else:
            wav_scp[utt] = p
    # durations from headers where libsndfile reads the file, else by decoding the pipe
    probe_scp = {u: (p if p.rsplit(".", 1)[1].lower() in sf_ok else wav_scp[u]) for u, p in paths.items()}
    utt2dur = utt2dur_of(probe_scp, nj, where=str(src))
    nspk = len(set(utt2spk.values()))
    ntest = num_test_of(nspk, num_test_spk, test_fraction)
    _, test_spk = split_speakers(utt2spk.values(), ntest, seed)
    train_dir, test_dir = write_corpus(data_root, name, wav_scp, utt2spk, utt2dur, test_spk)
    return f"{ntest} of {nspk} speakers for test, seed {seed}; " + summary(train_dir, test_dir, utt2spk,
                                                                        utt2dur)
