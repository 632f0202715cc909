"""Combining data dirs (``utils/combine_data.sh``) and the ``utt2spk`` <-> ``spk2utt`` conversions
(``utils/utt2spk_to_spk2utt.sh``, ``utils/spk2utt_to_utt2spk.sh``)."""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from ..corpora.common import spk2utt_of
from ..tables import DataError, write_table
from .layout import PER_SPK, PER_UTT, PLAIN_FILES, known_files, load_tables, write_bytes


def _line_of(path: Path, key: str) -> int:
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            if line.split(maxsplit=1)[:1] == [key]:
                return lineno
    return 0


@dataclass
class CombineReport:
    """What :func:`combine_data` wrote, and anything the user should know."""

    utterances: int
    speakers: int
    notes: list[str] = field(default_factory=list)


def combine_data(dest: str | os.PathLike, srcs: list[str | os.PathLike]) -> CombineReport:
    """Write the union of data dirs ``srcs`` into ``dest``, C-sorted, ``spk2utt`` rebuilt.

    An id that two sources give different entries (another speaker, another wav.scp line, ...) is an
    error naming both files and lines; identical repeats are merged. A table only some sources have is
    left out, with a note, as in Kaldi. Trials are not combined.
    """
    out = Path(dest)
    if not srcs:
        raise DataError("combine_data: no source data dirs given")
    if any(Path(s).resolve() == out.resolve() for s in srcs):
        raise DataError(f"{out}: the destination is also a source")
    all_tables = [load_tables(s) for s in srcs]
    notes: list[str] = []
    combined: dict[str, dict[str, str]] = {}
    for name in [*PER_UTT, *PER_SPK]:
        have = [t for t in all_tables if name in t.per_utt or name in t.per_spk]
        if not have:
            continue
        if len(have) < len(all_tables):
            lacking = [str(t.path) for t in all_tables if t not in have]
            if name == "utt2spk":
                raise DataError(f"{lacking[0]}: no utt2spk")
            notes.append(f"{name} left out: {', '.join(lacking)} {'has' if len(lacking) == 1 else 'have'} "
                         "none")
            continue
        table: dict[str, str] = {}
        origin: dict[str, Path] = {}
        for t in have:
            src = t.per_utt.get(name, t.per_spk.get(name, {}))
            for k, v in src.items():
                if k in table and table[k] != v:
                    a, b = origin[k] / name, t.path / name
                    raise DataError(f"conflicting entries for {k!r}: {a}:{_line_of(a, k)} has {table[k]!r}, "
                                    f"{b}:{_line_of(b, k)} has {v!r}")
                table[k] = v
                origin.setdefault(k, t.path)
        combined[name] = table
    if any(t.trials is not None for t in all_tables):
        notes.append("trials not combined")
    out.mkdir(parents=True, exist_ok=True)
    for name, table in combined.items():
        write_table(out / name, table)
    spk2utt = spk2utt_of(combined["utt2spk"])
    write_table(out / "spk2utt", spk2utt)
    for name in PLAIN_FILES:
        contents = {t.plain.get(name) for t in all_tables}
        if len(contents) == 1 and None not in contents:
            write_bytes(out / name, contents.pop())
    for name in known_files():
        if name not in combined and name not in ("spk2utt", *PLAIN_FILES) and (out / name).is_file():
            (out / name).unlink()
    return CombineReport(len(combined["utt2spk"]), len(spk2utt), notes)


def utt2spk_to_spk2utt(lines: Iterable[str], where: str = "<stdin>") -> Iterator[str]:
    """Kaldi's ``utt2spk_to_spk2utt.pl``: speakers in order of first appearance, each with its
    utterances in input order (for a sorted utt2spk this is the C-sorted ``spk2utt``)."""
    groups: dict[str, list[str]] = {}
    for lineno, line in enumerate(lines, 1):
        parts = line.split()
        if len(parts) != 2:
            raise DataError(f"{where}:{lineno}: expected '<utt> <spk>', got {line.rstrip()!r}")
        groups.setdefault(parts[1], []).append(parts[0])
    for spk, utts in groups.items():
        yield f"{spk} {' '.join(utts)}"


def spk2utt_to_utt2spk(lines: Iterable[str], where: str = "<stdin>") -> Iterator[str]:
    """Kaldi's ``spk2utt_to_utt2spk.pl``: one ``<utt> <spk>`` line per utterance, in input order."""
    for lineno, line in enumerate(lines, 1):
        parts = line.split()
        if len(parts) < 2:
            raise DataError(f"{where}:{lineno}: expected '<spk> <utt> ...', got {line.rstrip()!r}")
        for utt in parts[1:]:
            yield f"{utt} {parts[0]}"
