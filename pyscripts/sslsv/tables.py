"""Kaldi text tables (``wav.scp``, ``utt2spk``, ``spk2utt``, ...): reading with errors that name the
file and line, the vectors an scp names (:func:`read_vector_scp`), and atomic writing (temporary
name, then rename) so a killed run never leaves a half-written file behind."""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np


class DataError(Exception):
    """Bad input data; the message names the file (and line) at fault."""


def read_table(path: str | os.PathLike, min_fields: int = 2, max_fields: int | None = None
               ) -> list[tuple[str, list[str]]]:
    """Read ``<key> <field> ...`` lines, checking the field count and that keys are unique.

    Returns ``[(key, fields), ...]`` in file order. Raises :class:`DataError` naming ``path:line``.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: no such file")
    rows: list[tuple[str, list[str]]] = []
    seen: dict[str, int] = {}
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            parts = line.split()
            if not parts:
                raise DataError(f"{path}:{lineno}: empty line")
            n = len(parts)
            if n < min_fields or (max_fields is not None and n > max_fields):
                want = f"{min_fields}" if max_fields == min_fields else (
                    f"at least {min_fields}" if max_fields is None else f"{min_fields}-{max_fields}")
                raise DataError(f"{path}:{lineno}: expected {want} fields, got {n}: {line.rstrip()!r}")
            key = parts[0]
            if key in seen:
                raise DataError(f"{path}:{lineno}: duplicate key {key!r} (first on line {seen[key]})")
            seen[key] = lineno
            rows.append((key, parts[1:]))
    return rows


def read_scp(path: str | os.PathLike) -> dict[str, str]:
    """Read a ``<key> <value...>`` file where the value is the rest of the line (e.g. a pipe command)."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: no such file")
    out: dict[str, str] = {}
    lines: dict[str, int] = {}
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            parts = line.strip().split(maxsplit=1)
            if len(parts) != 2:
                raise DataError(f"{path}:{lineno}: expected '<key> <value>', got {line.rstrip()!r}")
            key, value = parts
            if key in out:
                raise DataError(f"{path}:{lineno}: duplicate key {key!r} (first on line {lines[key]})")
            out[key] = value
            lines[key] = lineno
    return out


def read_map(path: str | os.PathLike) -> dict[str, str]:
    """Read a two-column table (``utt2spk``, ``utt2dur``, ...) as a dict."""
    return {k: v[0] for k, v in read_table(path, 2, 2)}


def umask() -> int:
    """The process's umask (read without changing it where /proc tells, else set and restored)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except OSError:
        pass
    old = os.umask(0o022)
    os.umask(old)
    return old


def mkstemp_beside(path: Path) -> str:
    """A new empty temporary file ``.<name>.*.tmp`` in ``path``'s folder with the umask's mode, for an
    output that is renamed onto ``path`` when complete."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    os.chmod(tmp, 0o666 & ~umask())
    return tmp


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success rename it onto ``path``, on error remove it.
    The file starts with the mode a plain ``open()`` would give (0666 less the umask), not ``mkstemp``'s
    0600, so on a shared server the group reads what the recipe writes (a writer may chmod it)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = mkstemp_beside(path)
    try:
        yield Path(tmp)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def write_lines(path: str | os.PathLike, lines: Iterable[str]) -> None:
    """Write text lines atomically, each followed by a newline."""
    with atomic_path(path) as tmp, open(tmp, "w", encoding="utf-8") as f:
        for line in lines:
            f.write(line)
            f.write("\n")


def write_table(path: str | os.PathLike, table: dict[str, object] | Iterable[tuple[str, object]],
                sort: bool = True) -> None:
    """Write ``<key> <value>`` lines atomically; values that are lists are joined by spaces.

    Keys are sorted in C-locale (byte) order, as Kaldi requires, unless ``sort`` is false.
    """
    items = list(table.items()) if isinstance(table, dict) else list(table)
    if sort:
        items.sort(key=lambda kv: kv[0].encode())

    def fmt(v: object) -> str:
        return " ".join(map(str, v)) if isinstance(v, (list, tuple)) else str(v)

    write_lines(path, (f"{k} {fmt(v)}" for k, v in items))


def c_sorted(keys: Iterable[str]) -> list[str]:
    """Sort strings in C-locale (byte) order, the order every Kaldi table is in."""
    return sorted(keys, key=lambda s: s.encode())


def read_vector_scp(path: str | os.PathLike) -> tuple[list[str], np.ndarray]:
    """Read the vectors an scp names (``ivector.scp``, an embedding scp): keys in file order and an
    (N, dim) float64 matrix. Errors name ``scp:line`` (unreadable entry, not a vector, wrong dim)."""
    import kaldiio

    entries = read_scp(path)
    keys = list(entries)
    if not keys:
        raise DataError(f"{path}: no vectors")
    rows: list[np.ndarray] = []
    dim = None
    for i, key in enumerate(keys):
        try:
            v = np.asarray(kaldiio.load_mat(entries[key]), dtype=np.float64)
        except Exception as e:  # kaldiio raises many kinds
            raise DataError(f"{path}:{i + 1}: cannot read vector of {key!r} "
                            f"from {entries[key]!r}: {e}") from None
        if v.ndim == 2 and v.shape[0] == 1:
            v = v[0]
        if v.ndim != 1:
            raise DataError(f"{path}:{i + 1}: {key!r} is a {v.shape} matrix, not a vector")
        if dim is None:
            dim = len(v)
        elif len(v) != dim:
            raise DataError(f"{path}:{i + 1}: {key!r} has dimension {len(v)}, the first vector {dim}")
        if not np.all(np.isfinite(v)):
            raise DataError(f"{path}:{i + 1}: {key!r} has non-finite values")
        rows.append(v)
    return keys, np.vstack(rows)
