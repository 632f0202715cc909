"""Splitting a data dir into parts for parallel jobs (``utils/split_data.sh``) and taking subsets of it
(``utils/subset_data_dir.sh``). Both write through :func:`sslsv.datadir.layout.write_subset`, so every
per-utterance and per-speaker table is carried over consistently."""

from __future__ import annotations

import bisect
import os
import random
from dataclasses import dataclass, field
from pathlib import Path

from ..corpora.common import spk2utt_of
from ..tables import DataError, c_sorted
from .layout import PER_SPK, PER_UTT, Tables, load_tables, write_subset


def split_dir(data: str | os.PathLike, num: int, per_utt: bool = False) -> Path:
    """Where :func:`split_data` puts ``num`` parts: ``<data>/split<num>`` or ``<data>/split<num>utt``."""
    return Path(data) / f"split{num}{'utt' if per_utt else ''}"


def _balanced_bounds(sizes: list[int], num: int) -> list[int]:
    """Cut a sequence of groups into ``num`` contiguous non-empty runs of near-equal total size: each cut
    goes to the group boundary nearest to its ideal position ``i * total / num``."""
    cum = [0]
    for s in sizes:
        cum.append(cum[-1] + s)
    total, n_groups = cum[-1], len(sizes)
    bounds = [0]
    for i in range(1, num):
        target = i * total / num
        lo, hi = bounds[-1] + 1, n_groups - (num - i)
        j = min(max(bisect.bisect_left(cum, target, lo, hi + 1), lo), hi)
        if j > lo and target - cum[j - 1] <= cum[j] - target:
            j -= 1
        bounds.append(j)
    bounds.append(n_groups)
    return bounds


def partition(utt2spk: dict[str, str], num: int, per_utt: bool = False) -> list[list[str]]:
    """Split the utterances (in C order) into ``num`` contiguous parts balanced by utterance count.

    Per speaker (the default) every speaker's utterances stay in one part; this needs at least ``num``
    speakers. Per utterance the part sizes differ by at most one.
    """
    utts = c_sorted(utt2spk)
    if num < 1:
        raise DataError(f"number of parts must be positive, got {num}")
    if per_utt:
        if len(utts) < num:
            raise DataError(f"cannot split {len(utts)} utterances into {num} parts")
        return [utts[i * len(utts) // num:(i + 1) * len(utts) // num] for i in range(num)]
    groups = spk2utt_of(utt2spk)           # speakers in order of their first utterance
    order = list(groups)
    if len(order) < num:
        raise DataError(f"only {len(order)} speakers, cannot split per speaker into {num} parts "
                        f"(use --per-utt or at most {len(order)} jobs)")
    bounds = _balanced_bounds([len(groups[s]) for s in order], num)
    parts = []
    for a, b in zip(bounds, bounds[1:], strict=False):
        parts.append(c_sorted(u for s in order[a:b] for u in groups[s]))
    return parts


def _is_fresh(data: Path, out: Path, num: int) -> bool:
    """True when every part holds every table of ``data``, none older than its source, and no table the
    source no longer has (Kaldi's ``-ot`` test)."""
    def mtime(p: Path) -> int:
        return p.stat().st_mtime_ns
    names = [n for n in [*PER_UTT, *PER_SPK] if (data / n).is_file()]
    sources = {n: mtime(data / n) for n in names}
    sources["spk2utt"] = max(mtime(data / "utt2spk"),
                             mtime(data / "spk2utt") if (data / "spk2utt").is_file() else 0)
    for i in range(1, num + 1):
        part = out / str(i)
        for name, t in sources.items():
            p = part / name
            if not p.is_file() or mtime(p) < t:
                return False
        for name in [*PER_UTT, *PER_SPK]:
            if name not in sources and (part / name).exists():
                return False
    return True


def split_data(data: str | os.PathLike, num: int, per_utt: bool = False) -> tuple[Path, bool]:
    """Split data dir ``data`` into ``num`` parts ``<data>/split<num>[utt]/<1..num>/`` (see
    :func:`partition`). Skipped when the split exists and is newer than its sources. Returns the split
    dir and whether it was (re)written."""
    d = Path(data)
    out = split_dir(d, num, per_utt)
    if (d / "utt2spk").is_file() and out.is_dir() and _is_fresh(d, out, num):
        return out, False
    tables = load_tables(d)
    parts = partition(tables.utt2spk, num, per_utt)
    for i, utts in enumerate(parts, 1):
        write_subset(tables, out / str(i), utts, trials=False)
    return out, True


@dataclass
class SubsetReport:
    """What :func:`subset_data_dir` wrote, and anything the user should know."""

    utterances: int
    speakers: int
    notes: list[str] = field(default_factory=list)


def _read_ids(path: str | os.PathLike) -> list[str]:
    p = Path(path)
    if not p.is_file():
        raise DataError(f"{p}: no such file")
    return [line.split()[0] for line in p.read_text(encoding="utf-8").splitlines() if line.split()]


def _lengths(tables: Tables) -> dict[str, float]:
    for name, conv in (("utt2num_frames", int), ("utt2dur", float)):
        if name in tables.per_utt:
            try:
                return {u: conv(v) for u, v in tables.per_utt[name].items()}
            except ValueError as e:
                raise DataError(f"{tables.path / name}: {e}") from e
    raise DataError(f"{tables.path}: --shortest/--longest need utt2num_frames or utt2dur "
                    "(made by steps/make_mfcc.sh, or write utt2dur)")


def select(tables: Tables, *, utt_list: str | os.PathLike | None = None,
           spk_list: str | os.PathLike | None = None, first: int | None = None, last: int | None = None,
           shortest: int | None = None, longest: int | None = None, per_spk: int | None = None,
           num_random: int | None = None, seed: int = 0, notes: list[str] | None = None) -> list[str]:
    """Choose utterances as Kaldi's ``subset_data_dir.sh`` options do; exactly one selection is given.

    ``first``/``last``: the first/last N in C order; ``shortest``/``longest``: the N shortest/longest by
    ``utt2num_frames`` (else ``utt2dur``), ties by id; ``per_spk``: the first N of each speaker;
    ``num_random``: N at random with ``seed``; ``utt_list``/``spk_list``: the ids in the first column of
    a file. Asking for more than there are takes all (with a note).
    """
    notes = notes if notes is not None else []
    given = {k: v for k, v in dict(utt_list=utt_list, spk_list=spk_list, first=first, last=last,
                                   shortest=shortest, longest=longest, per_spk=per_spk,
                                   num_random=num_random).items() if v is not None}
    if len(given) != 1:
        raise DataError(f"give exactly one way to choose utterances, got {sorted(given) or 'none'}")
    (how, n), = given.items()
    utts = tables.utts
    if how in ("utt_list", "spk_list"):
        ids = _read_ids(n)
        if how == "utt_list":
            known = set(ids) & tables.utt2spk.keys()
        else:
            groups = spk2utt_of(tables.utt2spk)
            known = {s for s in ids if s in groups}
        missing = [i for i in ids if i not in known]
        if missing:
            notes.append(f"{len(missing)} of {len(ids)} ids in {n} are not in {tables.path} "
                         f"(e.g. {missing[0]!r}); ignored")
        return c_sorted(known) if how == "utt_list" else c_sorted(u for s in known for u in groups[s])
    if n < 0:
        raise DataError(f"--{how.replace('_', '-')} needs a non-negative count, got {n}")
    if how == "per_spk":
        return c_sorted(u for us in spk2utt_of(tables.utt2spk).values() for u in us[:n])
    if n >= len(utts):
        if n > len(utts):
            notes.append(f"asked for {n} utterances but {tables.path} has {len(utts)}; taking all")
        return utts
    if how == "first":
        return utts[:n]
    if how == "last":
        return utts[len(utts) - n:]
    if how in ("shortest", "longest"):
        length = _lengths(tables)
        sign = 1 if how == "shortest" else -1
        ranked = sorted(utts, key=lambda u: (sign * length[u], u.encode()))
        return c_sorted(ranked[:n])
    return c_sorted(random.Random(seed).sample(utts, n))


def subset_data_dir(src: str | os.PathLike, dest: str | os.PathLike, **selection) -> SubsetReport:
    """Write the utterances chosen by :func:`select` (same keyword arguments) from ``src`` into
    ``dest`` with all their tables (trials kept where both sides are kept)."""
    tables = load_tables(src)
    notes: list[str] = []
    utts = select(tables, notes=notes, **selection)
    if not utts:
        raise DataError(f"{src}: the selection is empty; nothing written to {dest}")
    n_utt, n_spk = write_subset(tables, dest, utts)
    return SubsetReport(n_utt, n_spk, notes)
