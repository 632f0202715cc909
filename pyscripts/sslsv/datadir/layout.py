"""What a Kaldi data dir holds and how its tables are read: the known files, whether each is keyed by
utterance or by speaker, the shape of its lines; a lenient line scanner that records every problem with
its line number (for validation and repair), and a loader plus a subset writer shared by split, subset
and combine."""

from __future__ import annotations

import math
import os
import shutil
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

from ..corpora.common import spk2utt_of
from ..tables import DataError, atomic_path, c_sorted, read_map, read_scp, write_lines, write_table


def _positive_float(fields: list[str]) -> str | None:
    try:
        v = float(fields[0])
    except ValueError:
        return f"not a number: {fields[0]!r}"
    return None if math.isfinite(v) and v > 0 else f"not a positive duration: {fields[0]!r}"


def _positive_int(fields: list[str]) -> str | None:
    try:
        v = int(fields[0])
    except ValueError:
        return f"not an integer: {fields[0]!r}"
    return None if v > 0 else f"not a positive count: {fields[0]!r}"


def _gender(fields: list[str]) -> str | None:
    return None if fields[0] in ("m", "f") else f"gender must be m or f, got {fields[0]!r}"


@dataclass(frozen=True)
class Spec:
    """Shape of one table: keyed by ``"utt"`` or ``"spk"``; fields per line counting the key; an
    optional check of the value fields returning an error message."""

    per: str
    min_fields: int
    max_fields: int | None = None
    check: Callable[[list[str]], str | None] | None = None


#: Tables keyed by utterance. All present must cover exactly the utterances of ``utt2spk``.
#: (Without a ``segments`` file a recording is an utterance, so ``reco2dur`` is keyed by utterance.)
PER_UTT: dict[str, Spec] = {
    "utt2spk": Spec("utt", 2, 2),
    "wav.scp": Spec("utt", 2),
    "utt2dur": Spec("utt", 2, 2, _positive_float),
    "reco2dur": Spec("utt", 2, 2, _positive_float),
    "feats.scp": Spec("utt", 2),
    "vad.scp": Spec("utt", 2),
    "utt2num_frames": Spec("utt", 2, 2, _positive_int),
    "text": Spec("utt", 1),
    "utt2lang": Spec("utt", 2, 2),
    "utt2uniq": Spec("utt", 2, 2),
}
#: Tables keyed by speaker (``spk2utt`` is derived from ``utt2spk`` and handled on its own).
PER_SPK: dict[str, Spec] = {
    "spk2gender": Spec("spk", 2, 2, _gender),
    "spk2age": Spec("spk", 2, 2),
    "cmvn.scp": Spec("spk", 2),
}
SPK2UTT = Spec("spk", 2)
#: Small files copied unchanged by subset and split.
PLAIN_FILES = ("frame_shift",)
TRIAL_LABELS = ("target", "nontarget")


class Row(NamedTuple):
    """One well-formed line: 1-based line number, key, the rest of the line (stripped)."""

    lineno: int
    key: str
    value: str


@dataclass
class Scan:
    """A table read line by line without stopping at the first problem."""

    path: Path
    rows: list[Row] = field(default_factory=list)            # every well-formed line, in file order
    first: dict[str, Row] = field(default_factory=dict)      # first well-formed line of each key
    dups: list[tuple[Row, int]] = field(default_factory=list)  # (repeated line, line of first)
    bad: list[tuple[int, str | None, str]] = field(default_factory=list)  # (line, key or None, why)
    unsorted: tuple[int, str, str] | None = None             # (line, key, previous key)
    crlf_line: int | None = None                              # first line ending in CR

    def where(self, lineno: int) -> str:
        return f"{self.path}:{lineno}"


def scan_table(path: str | os.PathLike, spec: Spec, check_order: bool = True) -> Scan:
    """Read ``path`` as a table of ``spec``; record malformed lines, duplicate keys and the first line
    out of C order instead of raising, so a caller can report (or repair) all of them."""
    scan = Scan(Path(path))
    prev: bytes | None = None
    prev_key = ""
    lines = scan.path.read_bytes().split(b"\n")
    if lines and lines[-1] == b"":
        lines.pop()
    for lineno, raw in enumerate(lines, 1):
        if raw.endswith(b"\r"):
            raw = raw[:-1]
            if scan.crlf_line is None:
                scan.crlf_line = lineno
        try:
            line = raw.decode("utf-8")
        except UnicodeDecodeError:
            scan.bad.append((lineno, None, "not valid UTF-8"))
            continue
        parts = line.split()
        if not parts:
            scan.bad.append((lineno, None, "empty line"))
            continue
        key = parts[0]
        kb = key.encode()
        if check_order and prev is not None and kb < prev and scan.unsorted is None:
            scan.unsorted = (lineno, key, prev_key)
        prev, prev_key = kb, key
        n = len(parts)
        if n < spec.min_fields or (spec.max_fields is not None and n > spec.max_fields):
            want = (str(spec.min_fields) if spec.max_fields == spec.min_fields else
                    f"at least {spec.min_fields}" if spec.max_fields is None else
                    f"{spec.min_fields}-{spec.max_fields}")
            scan.bad.append((lineno, key, f"expected {want} fields, got {n}"))
            continue
        if spec.check is not None:
            msg = spec.check(parts[1:])
            if msg:
                scan.bad.append((lineno, key, msg))
                continue
        row = Row(lineno, key, line.split(maxsplit=1)[1].strip() if n > 1 else "")
        scan.rows.append(row)
        if key in scan.first:
            scan.dups.append((row, scan.first[key].lineno))
        else:
            scan.first[key] = row
    return scan


def scan_trials(path: str | os.PathLike) -> Scan:
    """Read a trials list ``<enroll> <test> target|nontarget``; keys (enrolment ids) may repeat and the
    list need not be sorted."""
    scan = scan_table(path, Spec("utt", 3, 3), check_order=False)
    good: list[Row] = []
    for row in scan.rows:
        label = row.value.split()[1]
        if label not in TRIAL_LABELS:
            scan.bad.append((row.lineno, row.key, f"label must be target or nontarget, got {label!r}"))
        else:
            good.append(row)
    scan.rows = good
    scan.dups = []
    scan.first = {}
    return scan


@dataclass
class Tables:
    """A data dir read into memory: its per-utterance and per-speaker tables as ``key -> value``."""

    path: Path
    utt2spk: dict[str, str]
    per_utt: dict[str, dict[str, str]]   # includes utt2spk
    per_spk: dict[str, dict[str, str]]
    trials: list[tuple[str, str, str]] | None
    plain: dict[str, bytes]

    @property
    def utts(self) -> list[str]:
        return c_sorted(self.utt2spk)


def load_tables(data: str | os.PathLike) -> Tables:
    """Read every known table of a data dir, strictly (the first malformed line or duplicate key raises
    :class:`DataError` naming file and line), and check that the per-utterance tables all cover the
    utterances of ``utt2spk`` (otherwise the message points to ``utils/fix_data_dir.sh``)."""
    d = Path(data)
    if not (d / "utt2spk").is_file():
        raise DataError(f"{d}: no utt2spk (not a data dir?)")
    if (d / "segments").exists():
        raise DataError(f"{d}/segments: segment files are not supported; cut the segments into files")
    utt2spk = read_map(d / "utt2spk")
    per_utt = {"utt2spk": utt2spk}
    for name in PER_UTT:
        if name != "utt2spk" and (d / name).is_file():
            table = read_scp(d / name)
            if table.keys() != utt2spk.keys():
                missing = c_sorted(utt2spk.keys() - table.keys())
                extra = c_sorted(table.keys() - utt2spk.keys())
                what = (f"lacks {len(missing)} utterances of utt2spk (e.g. {missing[0]!r})" if missing
                        else f"has {len(extra)} utterances not in utt2spk (e.g. {extra[0]!r})")
                raise DataError(f"{d / name} {what}; run utils/fix_data_dir.sh {d}")
            per_utt[name] = table
    per_spk = {name: read_scp(d / name) for name in PER_SPK if (d / name).is_file()}
    trials = None
    if (d / "trials").is_file():
        scan = scan_trials(d / "trials")
        if scan.bad:
            lineno, _, why = scan.bad[0]
            raise DataError(f"{scan.where(lineno)}: {why}")
        trials = [(r.key, *r.value.split()) for r in scan.rows]
    plain = {name: (d / name).read_bytes() for name in PLAIN_FILES if (d / name).is_file()}
    return Tables(d, utt2spk, per_utt, per_spk, trials, plain)


def known_files() -> list[str]:
    """Names of every table this module reads and writes."""
    return [*PER_UTT, *PER_SPK, "spk2utt", "trials", *PLAIN_FILES]


def write_subset(tables: Tables, dest: str | os.PathLike, utts: Iterable[str], trials: bool = True,
                 remove_stale: bool = True) -> tuple[int, int]:
    """Write the part of ``tables`` that ``utts`` select into data dir ``dest``: every per-utterance
    table restricted to them, ``spk2utt`` rebuilt, per-speaker tables restricted to their speakers and
    (if ``trials``) the trials naming only kept utterances. Tables of ``dest`` that the source lacks are
    removed so that none is left from an earlier run. Returns ``(utterances, speakers)``."""
    out = Path(dest)
    if out.resolve() == tables.path.resolve():
        raise DataError(f"{out}: destination is the source data dir")
    keep = set(utts)
    unknown = keep - tables.utt2spk.keys()
    if unknown:
        raise DataError(f"{tables.path}: no such utterance {c_sorted(unknown)[0]!r}")
    if not keep:
        raise DataError(f"{out}: no utterances selected")
    out.mkdir(parents=True, exist_ok=True)
    u2s = {u: s for u, s in tables.utt2spk.items() if u in keep}
    written = {"spk2utt"}
    for name, table in tables.per_utt.items():
        write_table(out / name, {u: v for u, v in table.items() if u in keep})
        written.add(name)
    spk2utt = spk2utt_of(u2s)
    write_table(out / "spk2utt", spk2utt)
    for name, table in tables.per_spk.items():
        write_table(out / name, {s: v for s, v in table.items() if s in spk2utt})
        written.add(name)
    if trials and tables.trials is not None:
        write_lines(out / "trials", (" ".join(t) for t in tables.trials if t[0] in keep and t[1] in keep))
        written.add("trials")
    for name, content in tables.plain.items():
        if not (out / name).is_file() or (out / name).read_bytes() != content:
            write_bytes(out / name, content)
        written.add(name)
    if remove_stale:
        for name in known_files():
            if name not in written and (out / name).is_file():
                (out / name).unlink()
    return len(u2s), len(spk2utt)


def write_bytes(path: Path, content: bytes) -> None:
    """Write a small file atomically."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(content)


def copy_to_backup(data: Path, name: str) -> Path:
    """Copy ``data/name`` into ``data/.backup/`` (atomically) before it is rewritten, and return the copy.
    A backup is never overwritten: the first is ``.backup/<name>``, later ones ``.backup/<name>.1``,
    ``.2``, ... (so the original of the first repair is always ``.backup/<name>``)."""
    backup = data / ".backup"
    backup.mkdir(exist_ok=True)
    dest, n = backup / name, 0
    while dest.exists():
        n += 1
        dest = backup / f"{name}.{n}"
    tmp = backup / f".{name}.tmp"
    shutil.copy2(data / name, tmp)
    os.replace(tmp, dest)
    return dest
