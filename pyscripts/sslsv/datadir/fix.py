"""Repair of a Kaldi data dir (``utils/fix_data_dir.sh``): keep the utterances every table agrees on,
drop speakers left without utterances, re-sort, rebuild ``spk2utt``; optionally drop utterances whose
audio is unusable. Every dropped utterance is logged with its reason and file:line; the originals of
rewritten files go to ``<data>/.backup/`` first (numbered, never overwritten) and every file is written
atomically; trials naming a dropped utterance are dropped and counted in the summary line."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path

from ..corpora.common import spk2utt_of
from ..tables import DataError, c_sorted, write_lines
from .audiocheck import check_audio
from .layout import PER_SPK, PER_UTT, Scan, copy_to_backup, scan_table, scan_trials

LOG_NAME = "fix_data_dir.log"


@dataclass
class FixReport:
    """What :func:`fix_data_dir` did."""

    data: Path
    total: int                                   # utterances named in utt2spk
    kept: int
    speakers_total: int
    speakers_kept: int
    dropped: dict[str, tuple[str, str]] = field(default_factory=dict)   # utt -> (where, why)
    rewritten: list[str] = field(default_factory=list)
    log: Path | None = None
    trials_total: int = 0                        # lines of trials (0: no trials file)
    trials_kept: int = 0

    def summary(self) -> str:
        """One line for the terminal."""
        if not self.rewritten:
            return f"{self.data}: nothing to fix ({self.kept} utterances, {self.speakers_kept} speakers)"
        spk = (f"; {self.speakers_kept} of {self.speakers_total} speakers"
               if self.speakers_kept != self.speakers_total else "")
        trials = (f"; {self.trials_total - self.trials_kept} of {self.trials_total} trials dropped"
                  if self.trials_kept != self.trials_total else "")
        return (f"kept {self.kept} of {self.total} utterances ({self.total - self.kept} dropped{spk}"
                f"{trials}, see {self.log})")


def _render(table: dict[str, str]) -> list[str]:
    return [f"{k} {table[k]}" if table[k] else k for k in c_sorted(table)]


def fix_data_dir(data: str | os.PathLike, *, check_audio_files: bool = False, sample_rate: int | None = None,
                 min_samples: int = 0, run_pipes: bool = False, jobs: int | None = None) -> FixReport:
    """Repair data dir ``data`` in place as Kaldi's ``fix_data_dir.sh`` does (see the module doc).

    Malformed lines and exact repeats are dropped; an utterance with two different entries in one
    table is dropped as ambiguous; trials naming dropped utterances are dropped. With
    ``check_audio_files`` (implied by ``sample_rate`` or ``min_samples``) utterances whose audio is
    missing, unreadable, empty, not mono, at another rate or shorter than ``min_samples`` are dropped.
    """
    d = Path(data)
    if not (d / "utt2spk").is_file():
        raise DataError(f"{d}: no utt2spk (not a data dir?)")
    if (d / "segments").exists():
        raise DataError(f"{d}/segments: segment files are not supported; cut the segments into files")
    check_audio_files = check_audio_files or sample_rate is not None or min_samples > 0
    log: list[str] = []
    reasons: dict[str, dict[str, tuple[str, str]]] = {}   # table -> key -> (where, why) for lost lines
    conflicts: dict[str, dict[str, tuple[str, str]]] = {}  # table -> key -> (where, why)

    def read(name: str, spec) -> Scan:
        scan = scan_table(d / name, spec)
        lost = reasons.setdefault(name, {})
        for lineno, key, why in scan.bad:
            log.append(f"drop line {scan.where(lineno)}: {why}")
            if key is not None and key not in scan.first:
                lost.setdefault(key, (scan.where(lineno), why))
        for row, first in scan.dups:
            if row.value == scan.first[row.key].value:
                log.append(f"drop line {scan.where(row.lineno)}: repeats line {first}")
            else:
                conflicts.setdefault(name, {}).setdefault(
                    row.key, (scan.where(row.lineno), f"conflicting entries in {name} (lines {first} and "
                                                      f"{row.lineno})"))
        return scan

    utt_scans = {n: read(n, s) for n, s in PER_UTT.items() if (d / n).is_file()}
    spk_scans = {n: read(n, s) for n, s in PER_SPK.items() if (d / n).is_file()}
    u2s = utt_scans["utt2spk"]
    all_utts = set(u2s.first) | set(reasons["utt2spk"])
    dropped: dict[str, tuple[str, str]] = {}
    for u, why in reasons["utt2spk"].items():
        dropped[u] = why
    for u, row in u2s.first.items():
        for name, scan in utt_scans.items():
            if u in conflicts.get(name, {}):
                dropped[u] = conflicts[name][u]
                break
            if u not in scan.first:
                dropped[u] = reasons[name].get(u, (u2s.where(row.lineno), f"no entry in {name}"))
                break
    for scan in utt_scans.values():
        for k, row in scan.first.items():
            if k not in all_utts:
                log.append(f"drop line {scan.where(row.lineno)}: utterance {k!r} is not in utt2spk")
    utt2spk = {u: r.value for u, r in u2s.first.items() if u not in dropped}
    for name, scan in spk_scans.items():
        for u, spk in list(utt2spk.items()):
            if spk in conflicts.get(name, {}):
                dropped[u] = conflicts[name][spk]
            elif spk not in scan.first:
                dropped[u] = reasons[name].get(spk, (u2s.where(u2s.first[u].lineno),
                                                     f"speaker {spk!r} has no entry in {name}"))
            else:
                continue
            del utt2spk[u]
    if check_audio_files and "wav.scp" in utt_scans:
        wav = utt_scans["wav.scp"]
        bad = check_audio(((u, wav.first[u].value) for u in c_sorted(utt2spk)), sample_rate, min_samples,
                          run_pipes, jobs)
        for u, why in bad.items():
            dropped[u] = (wav.where(wav.first[u].lineno), why)
            del utt2spk[u]
    for u in c_sorted(dropped):
        where, why = dropped[u]
        log.append(f"drop utterance {u}: {why} ({where})")

    if not utt2spk:
        raise DataError(f"{d}: no utterance would be left; nothing changed. First reason: "
                        f"{next(iter(log), 'none')}")
    spk2utt = spk2utt_of(utt2spk)
    speakers_total = len({r.value for r in u2s.first.values()})
    for spk in c_sorted({r.value for r in u2s.first.values()} - spk2utt.keys()):
        log.append(f"drop speaker {spk}: no utterances left")

    new: dict[str, list[str]] = {}
    for name, scan in utt_scans.items():
        new[name] = _render({u: scan.first[u].value for u in utt2spk})
    new["spk2utt"] = _render({s: " ".join(us) for s, us in spk2utt.items()})
    for name, scan in spk_scans.items():
        new[name] = _render({s: scan.first[s].value for s in spk2utt if s in scan.first})
    trials_total = trials_kept = 0
    if (d / "trials").is_file():
        tr = scan_trials(d / "trials")
        trials_total = len(tr.rows) + len(tr.bad)
        for lineno, _, why in tr.bad:
            log.append(f"drop line {tr.where(lineno)}: {why}")
        lines = []
        for row in tr.rows:
            gone = [u for u in (row.key, row.value.split()[0]) if u not in utt2spk]
            if gone:
                log.append(f"drop line {tr.where(row.lineno)}: names removed utterance {gone[0]!r}")
            else:
                lines.append(f"{row.key} {row.value}")
        new["trials"] = lines
        trials_kept = len(lines)

    rewritten = []
    for name, lines in new.items():
        content = "".join(line + "\n" for line in lines).encode()
        path = d / name
        if path.is_file() and path.read_bytes() == content:
            continue
        if path.is_file():
            copy_to_backup(d, name)
        write_lines(path, lines)
        rewritten.append(name)
    report = FixReport(d, len(all_utts), len(utt2spk), speakers_total, len(spk2utt), dropped, rewritten,
                       trials_total=trials_total, trials_kept=trials_kept)
    if rewritten:
        report.log = d / ".backup" / LOG_NAME
        header = [f"# fix_data_dir {d} at {time.strftime('%Y-%m-%d %H:%M:%S')}",
                  f"# rewrote {' '.join(rewritten)} (originals in {d / '.backup'})",
                  f"# {report.summary()}"]
        earlier = report.log.read_text().splitlines() if report.log.is_file() else []
        write_lines(report.log, earlier + header + log)   # every run's record, oldest first
    return report
