"""What every corpus preparation shares: writing a Kaldi data dir, splitting speakers into disjoint
train and test sets by a fixed seed, and writing a trials list over the test set."""

from __future__ import annotations

import itertools
import os
import random
import sys
from collections import defaultdict
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from tqdm import tqdm

from ..audio import audio_info
from ..tables import DataError, c_sorted, write_lines, write_table


def spk2utt_of(utt2spk: dict[str, str]) -> dict[str, list[str]]:
    """Invert utt2spk; utterances of each speaker in C order."""
    out: dict[str, list[str]] = defaultdict(list)
    for utt in c_sorted(utt2spk):
        out[utt2spk[utt]].append(utt)
    return dict(out)


def write_data_dir(out_dir: str | os.PathLike, wav_scp: dict[str, str], utt2spk: dict[str, str],
                   utt2dur: dict[str, float] | None = None, **extra: dict[str, str]) -> Path:
    """Write ``wav.scp``, ``utt2spk``, ``spk2utt`` (and ``utt2dur`` and any extra ``name=table``) sorted
    in C order. Every utterance must have both a ``wav.scp`` and a ``utt2spk`` entry."""
    out = Path(out_dir)
    if set(wav_scp) != set(utt2spk):
        diff = sorted(set(wav_scp) ^ set(utt2spk))[:5]
        raise DataError(f"{out}: wav.scp and utt2spk disagree on utterances, e.g. {diff}")
    if not utt2spk:
        raise DataError(f"{out}: no utterances to write")
    bad = [u for u in utt2spk if any(c.isspace() for c in u + utt2spk[u])]
    if bad:
        raise DataError(f"{out}: utterance or speaker ids with whitespace, e.g. {bad[:3]}")
    out.mkdir(parents=True, exist_ok=True)
    write_table(out / "wav.scp", wav_scp)
    write_table(out / "utt2spk", utt2spk)
    write_table(out / "spk2utt", spk2utt_of(utt2spk))
    if utt2dur is not None:
        write_table(out / "utt2dur", {u: f"{d:.3f}" for u, d in utt2dur.items()})
    for name, table in extra.items():
        write_table(out / name, table)
    return out


def split_speakers(speakers: Iterable[str], num_test: int, seed: int) -> tuple[list[str], list[str]]:
    """Choose ``num_test`` test speakers at random (fixed seed); return ``(train, test)``, each C-sorted.
    A test set needs two speakers at least: one speaker gives only target trials, and no EER."""
    spks = c_sorted(set(speakers))
    if num_test < 2:
        raise DataError(f"a test set needs at least 2 speakers (one speaker gives only target trials, "
                        f"and no EER); got {num_test}")
    if not num_test < len(spks):
        raise DataError(f"cannot take {num_test} test speakers out of {len(spks)}")
    test = set(random.Random(seed).sample(spks, num_test))
    return [s for s in spks if s not in test], [s for s in spks if s in test]


def make_trials(utt2spk: dict[str, str], max_nontarget_per_target: float | None = None,
                seed: int = 0) -> list[tuple[str, str, str]]:
    """Every unordered pair of test utterances as ``(enroll, test, target|nontarget)``.

    With ``max_nontarget_per_target`` the non-target pairs are subsampled (fixed seed) to at most that
    many times the number of target pairs, which bounds the list on large test sets.
    """
    utts = c_sorted(utt2spk)
    pairs = [(a, b, "target" if utt2spk[a] == utt2spk[b] else "nontarget")
             for a, b in itertools.combinations(utts, 2)]
    if max_nontarget_per_target is not None:
        tgt = [p for p in pairs if p[2] == "target"]
        non = [p for p in pairs if p[2] == "nontarget"]
        k = int(max_nontarget_per_target * len(tgt))
        if k < len(non):
            non = random.Random(seed).sample(non, k)
        pairs = sorted(tgt + non, key=lambda p: (p[0].encode(), p[1].encode()))
    if not any(p[2] == "target" for p in pairs):
        raise DataError("trials: the test set has no speaker with two utterances")
    return pairs


def write_trials(path: str | os.PathLike, trials: Iterable[tuple[str, str, str]]) -> None:
    """Write a Kaldi trials file ``<enroll-utt> <test-utt> target|nontarget``."""
    write_lines(path, (" ".join(t) for t in trials))


def prefix_utt(spk: str, utt: str) -> str:
    """Utterance id with the speaker id as its prefix (Kaldi convention): ``utt`` itself when it
    already starts with ``<spk>-``, else ``<spk>-<utt>``."""
    return utt if utt.startswith(spk + "-") else f"{spk}-{utt}"


def check_spk_order(utt2spk: dict[str, str], where: str = "utt2spk") -> None:
    """Check that sorting by utterance also sorts by speaker, which Kaldi's data-dir validation and
    its per-speaker splitting require; it fails when a speaker id plus ``-`` sorts after another
    speaker id that extends it (e.g. ``ab`` and ``ab+x``)."""
    prev_spk, prev_utt = None, None
    for utt in c_sorted(utt2spk):
        spk = utt2spk[utt]
        if prev_spk is not None and spk.encode() < prev_spk.encode():
            raise DataError(f"{where}: speaker ids {prev_spk!r} and {spk!r} give different orders when "
                            f"sorting by utterance ({prev_utt!r} < {utt!r}) and by speaker; rename one")
        prev_spk, prev_utt = spk, utt


def utt2dur_of(wav_scp: dict[str, str], nj: int = 1, probe: Callable[[str], float] | None = None,
               where: str = "wav.scp", desc: str = "durations") -> dict[str, float]:
    """Duration in seconds of every ``wav.scp`` entry, ``nj`` at a time (threads: the work is file
    headers or child processes). Files are read from their headers (:func:`sslsv.audio.audio_info`);
    ``probe``, when given, replaces that for every entry (e.g. ``ffprobe`` for piped m4a)."""

    def one(item: tuple[str, str]) -> float:
        utt, entry = item
        if probe is not None:
            return probe(entry)
        n, rate, _ = audio_info(entry, f"{where}: {utt}")
        if n <= 0:
            raise DataError(f"{where}: {utt}: {entry!r} contains no samples")
        return n / rate

    items = list(wav_scp.items())
    show = len(items) >= 20000
    with ThreadPoolExecutor(max(1, nj)) as pool:
        durs = list(tqdm(pool.map(one, items), total=len(items), desc=desc, disable=not show,
                         mininterval=5, file=sys.stderr))
    return {utt: d for (utt, _), d in zip(items, durs, strict=True)}


def write_corpus(data_root: str | os.PathLike, name: str, wav_scp: dict[str, str],
                 utt2spk: dict[str, str], utt2dur: dict[str, float], test_speakers: Iterable[str],
                 trials: dict[str, list[tuple[str, str, str]]] | None = None,
                 train_speakers: Iterable[str] | None = None) -> tuple[Path, Path]:
    """Write ``<data_root>/<name>_train`` and ``<name>_test`` from one pool of utterances.

    The test set holds every utterance of ``test_speakers``; the training set every other utterance
    (or only those of ``train_speakers`` when given); the two must not share a speaker. ``trials``
    maps file names in the test dir (``trials``, ``trials_O``, ...) to trial lists; without it
    ``trials`` is every pair of test utterances. Everything is checked before anything is written.
    """
    root = Path(data_root)
    test_spk = set(test_speakers)
    train_spk = set(utt2spk.values()) - test_spk if train_speakers is None else set(train_speakers)
    shared = c_sorted(train_spk & test_spk)
    if shared:
        raise DataError(f"{root}/{name}_train and {name}_test would share {len(shared)} speakers, "
                        f"e.g. {shared[:5]}")
    parts = {}
    for part, spks in (("train", train_spk), ("test", test_spk)):
        u2s = {u: s for u, s in utt2spk.items() if s in spks}
        if not u2s:
            raise DataError(f"{root}/{name}_{part}: no utterances (speakers: {len(spks)})")
        parts[part] = u2s
    check_spk_order(utt2spk, f"{root}/{name}")
    if trials is None:
        trials = {"trials": make_trials(parts["test"])}
    for fname, tr in trials.items():
        unknown = [u for t in tr for u in t[:2] if u not in parts["test"]]
        if unknown:
            raise DataError(f"{root}/{name}_test/{fname}: utterance {unknown[0]!r} is not in the test set")
    dirs = []
    for part, u2s in parts.items():
        d = write_data_dir(root / f"{name}_{part}", {u: wav_scp[u] for u in u2s}, u2s,
                           {u: utt2dur[u] for u in u2s})
        dirs.append(d)
    for fname, tr in trials.items():
        write_trials(dirs[1] / fname, tr)
    return dirs[0], dirs[1]


def summary(train_dir: Path, test_dir: Path, utt2spk: dict[str, str], utt2dur: dict[str, float],
            trials: Iterable[tuple[str, str, str]] | None = None) -> str:
    """One line saying what was written: speakers, utterances and hours of each set, trial counts."""
    out = []
    for d in (train_dir, test_dir):
        with open(d / "utt2spk", encoding="utf-8") as f:
            utts = [line.split()[0] for line in f]
        spks = {utt2spk[u] for u in utts}
        hours = sum(utt2dur[u] for u in utts) / 3600
        out.append(f"{d}: {len(spks)} speakers, {len(utts)} utterances, {hours:.2f} h")
    n = tgt = 0
    if trials is None:
        with open(test_dir / "trials", encoding="utf-8") as f:
            for line in f:
                n += 1
                tgt += line.rstrip().endswith(" target")
    else:
        for t in trials:
            n += 1
            tgt += t[2] == "target"
    out.append(f"{test_dir}/trials: {n} trials ({tgt} target)")
    return "; ".join(out)
