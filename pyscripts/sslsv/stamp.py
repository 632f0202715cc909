"""Done-stamps that make stages idempotent: a stage records a fingerprint of its inputs and options
when it finishes; a rerun with the same fingerprint is skipped, a changed input or option redoes it.

The fingerprint covers the content of each input file (text tables, configs, models), for a
``wav.scp`` the size and modification time of every audio file it names, so replacing audio
invalidates the features made from it, and for a folder (a corpus read by stage 0) the relative path,
size and modification time of every file beneath it, so a file added to a speaker folder or audio
replaced in place is seen (a folder's own mtime changes only when its direct entries do).
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shlex
from pathlib import Path

from .tables import atomic_path

_CONTENT_LIMIT = 64 << 20  # hash content up to 64 MiB; larger files by size and mtime


def _audio_paths(wav_scp: Path) -> list[str]:
    paths: list[str] = []
    with open(wav_scp, encoding="utf-8") as f:
        for line in f:
            parts = line.split(maxsplit=1)
            if len(parts) < 2:
                continue
            value = parts[1].strip()
            if value.endswith("|"):
                try:
                    tokens = shlex.split(value[:-1])
                except ValueError:
                    tokens = value[:-1].split()
                paths.extend(t for t in tokens if "/" in t and os.path.isfile(t))
            else:
                paths.append(value)
    return paths


def _tree(root: Path) -> list[str]:
    """``relative-path:size:mtime_ns`` of every file under ``root`` (symbolic links followed, as the
    corpus readers follow them; hidden entries skipped), in sorted order."""
    out: list[str] = []
    seen: set[tuple[int, int]] = set()
    for d, dirs, files in os.walk(root, followlinks=True):
        st = os.stat(d)
        if (st.st_dev, st.st_ino) in seen:      # a link cycle
            dirs[:] = []
            continue
        seen.add((st.st_dev, st.st_ino))
        dirs[:] = sorted(x for x in dirs if not x.startswith("."))
        for f in sorted(files):
            if f.startswith("."):
                continue
            p = os.path.join(d, f)
            try:
                s = os.stat(p)
                out.append(f"{os.path.relpath(p, root)}:{s.st_size}:{s.st_mtime_ns}")
            except OSError:
                out.append(f"{os.path.relpath(p, root)}:<missing>")
    return out


def fingerprint(inputs: list[str | os.PathLike], options: str = "") -> str:
    """SHA-1 over the options string, the inputs' contents and the audio files a wav.scp names."""
    h = hashlib.sha1()
    h.update(options.encode())
    for p in map(Path, inputs):
        h.update(b"\0" + str(p).encode())
        if not p.exists():
            h.update(b"<missing>")
            continue
        st = p.stat()
        if p.is_dir():
            h.update("\n".join(_tree(p)).encode())
        elif st.st_size <= _CONTENT_LIMIT:
            h.update(p.read_bytes())
        else:
            h.update(f"{st.st_size}:{st.st_mtime_ns}".encode())
        if p.name == "wav.scp":
            for a in _audio_paths(p):
                try:
                    s = os.stat(a)
                    h.update(f"{a}:{s.st_size}:{s.st_mtime_ns}".encode())
                except OSError:
                    h.update(f"{a}:<missing>".encode())
    return h.hexdigest()


def is_done(stamp: str | os.PathLike, inputs: list[str | os.PathLike], options: str = "") -> bool:
    """True when ``stamp`` exists and records the current fingerprint of inputs and options."""
    stamp = Path(stamp)
    return stamp.is_file() and stamp.read_text().strip() == fingerprint(inputs, options)


def mark_done(stamp: str | os.PathLike, inputs: list[str | os.PathLike], options: str = "") -> None:
    """Record the fingerprint of inputs and options in ``stamp`` (atomically)."""
    with atomic_path(stamp) as tmp:
        Path(tmp).write_text(fingerprint(inputs, options) + "\n")


def scp_archives(scp_files: list[str | os.PathLike]) -> list[str]:
    """The distinct archive files that the entries of ``scp_files`` point into (``utt ark:offset``),
    in byte order. Only existing files are listed: a missing scp file contributes nothing (its absence
    is an input of its own), nor does an entry that is not a file (a pipe)."""
    arks: set[str] = set()
    for scp in map(Path, scp_files):
        if not scp.is_file():
            continue
        with open(scp, encoding="utf-8") as f:
            for line in f:
                parts = line.split(maxsplit=1)
                if len(parts) == 2:
                    value = parts[1].strip()
                    head, sep, tail = value.rpartition(":")
                    arks.add(head if sep and tail.isdigit() else value)
    return sorted(a for a in arks if os.path.isfile(a))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="stamp.py",
        description="check: exit 0 if the stamp matches the inputs and options (the step is done), "
                    "1 otherwise. write: record the stamp. fingerprint: print the fingerprint of the "
                    "inputs and options (the first positional argument is then an input too).")
    ap.add_argument("action", choices=["check", "write", "fingerprint"])
    ap.add_argument("stamp")
    ap.add_argument("inputs", nargs="*")
    ap.add_argument("--opts", default="", help="options string that also determines the output")
    ap.add_argument("--archives-of", action="extend", nargs="+", default=[], metavar="SCP",
                    help="add the archives these scp files point into to the inputs (features or "
                         "vectors rewritten in place then change the fingerprint)")
    a = ap.parse_args(argv)
    if a.action == "fingerprint":
        print(fingerprint([a.stamp, *a.inputs, *scp_archives(a.archives_of)], a.opts))
        return 0
    inputs = [*a.inputs, *scp_archives(a.archives_of)]
    if a.action == "check":
        return 0 if is_done(a.stamp, inputs, a.opts) else 1
    mark_done(a.stamp, inputs, a.opts)
    return 0
