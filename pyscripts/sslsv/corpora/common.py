"""What every corpus preparation shares: writing a Kaldi data dir, splitting speakers into disjoint
train and test sets by a fixed seed, and writing a trials list over the test set."""

from __future__ import annotations

import itertools
import os
import random
from collections import defaultdict
from collections.abc import Iterable
from pathlib import Path

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
    """Choose ``num_test`` test speakers at random (fixed seed); return ``(train, test)``, each C-sorted."""
    spks = c_sorted(set(speakers))
    if not 0 < num_test < len(spks):
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
