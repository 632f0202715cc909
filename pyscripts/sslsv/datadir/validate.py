"""Validation of a Kaldi data dir (``utils/validate_data_dir.sh``): every problem is collected with the
file and line at fault, so a user fixes them all in one go, and a step can call
:func:`validate_data_dir` before its long work starts."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from ..corpora.common import spk2utt_of
from ..tables import DataError
from .audiocheck import check_audio
from .layout import PER_SPK, PER_UTT, SPK2UTT, Scan, scan_table, scan_trials

SHOWN = 10  # problems listed in an error message; the exception carries all of them


@dataclass(frozen=True)
class Problem:
    """One problem: where (``file:line`` or ``file``) and what."""

    where: str
    message: str
    utt: str | None = None

    def __str__(self) -> str:
        return f"{self.where}: {self.message}"


class DataDirError(DataError):
    """A data dir failed validation; ``problems`` lists every problem found."""

    def __init__(self, data: str | os.PathLike, problems: list[Problem]):
        self.problems = problems
        lines = [f"{data}: {len(problems)} problem{'s' if len(problems) != 1 else ''}:"]
        lines += [f"  {p}" for p in problems[:SHOWN]]
        if len(problems) > SHOWN:
            lines.append(f"  ... and {len(problems) - SHOWN} more")
        super().__init__("\n".join(lines))


@dataclass(frozen=True)
class Summary:
    """What a successful validation saw."""

    utterances: int
    speakers: int
    files: tuple[str, ...]
    audio_checked: int


def _more(n: int) -> str:
    return f" ({n} more like it)" if n > 0 else ""


def scan_problems(scan: Scan, unique: bool = True) -> list[Problem]:
    """The problems a scan found: the first malformed line, the first line out of order, the first
    duplicate key and a DOS line ending, each with how many more there are."""
    out: list[Problem] = []
    if scan.bad:
        lineno, _, why = scan.bad[0]
        out.append(Problem(scan.where(lineno), why + _more(len(scan.bad) - 1)))
    if scan.unsorted is not None:
        lineno, key, prev = scan.unsorted
        out.append(Problem(scan.where(lineno), f"unsorted at line {lineno}: {key!r} after {prev!r} "
                                               "(sort with LC_ALL=C, or run utils/fix_data_dir.sh)"))
    if unique and scan.dups:
        row, first = scan.dups[0]
        out.append(Problem(scan.where(row.lineno), f"duplicate key {row.key!r} at line {row.lineno} "
                                                   f"(first at line {first})" + _more(len(scan.dups) - 1)))
    if scan.crlf_line is not None:
        out.append(Problem(scan.where(scan.crlf_line), "DOS line ending (carriage return)"))
    return out


def coverage_problems(ref: Scan, other: Scan, what: str = "utterance") -> list[Problem]:
    """Problems where ``other`` does not have exactly the keys of ``ref``: the first key missing from
    ``other`` (at its line in ``ref``) and the first key ``other`` has in excess (at its line there).
    Keys on malformed lines count as present: those lines are reported on their own."""
    out: list[Problem] = []
    # keys on malformed lines are already reported; do not report them again as missing
    in_other = other.first.keys() | {k for _, k, _ in other.bad if k is not None}
    in_ref = ref.first.keys() | {k for _, k, _ in ref.bad if k is not None}
    missing = [r for r in ref.first.values() if r.key not in in_other]
    extra = [r for r in other.first.values() if r.key not in in_ref]
    if missing:
        r = missing[0]
        out.append(Problem(ref.where(r.lineno), f"{what} {r.key!r} has no entry in {other.path.name}"
                           + _more(len(missing) - 1), r.key))
    if extra:
        r = extra[0]
        out.append(Problem(other.where(r.lineno), f"{what} {r.key!r} is not in {ref.path.name}"
                           + _more(len(extra) - 1), r.key))
    return out


def _ark_problems(scan: Scan) -> list[Problem]:
    """Entries of a feats/vad/cmvn scp whose ark file is missing; one problem per missing ark."""
    out: list[Problem] = []
    seen: dict[str, bool] = {}
    for row in scan.first.values():
        value = row.value
        if value.endswith("|"):
            continue
        if value.endswith("]") and "[" in value:
            value = value[: value.rindex("[")]
        path, sep, offset = value.rpartition(":")
        if not sep or not offset.isdigit():
            path = value
        if path not in seen:
            seen[path] = os.path.isfile(path)
            if not seen[path]:
                out.append(Problem(scan.where(row.lineno), f"archive not found: {path}", row.key))
    return out


def validate_data_dir(data: str | os.PathLike, *, require_feats: bool = True, require_wav: bool = True,
                      spk_sort: bool = True, check_audio_files: bool = False, sample_rate: int | None = None,
                      min_samples: int = 0, run_pipes: bool = False, jobs: int | None = None) -> Summary:
    """Check a data dir as Kaldi's ``validate_data_dir.sh`` does; raise :class:`DataDirError` listing
    every problem (file:line), or return a :class:`Summary`.

    Text checks: each table C-sorted with unique keys and well-formed lines; ``spk2utt`` the inverse of
    ``utt2spk``; every per-utterance table covering exactly the utterances of ``utt2spk`` and every
    per-speaker table its speakers; ``utt2spk`` sorted by speaker too (unless ``spk_sort`` is false:
    Kaldi's ``--no-spk-sort``); trials naming known utterances with ``target|nontarget``; the archives of
    ``feats.scp``/``vad.scp``/``cmvn.scp`` present. With ``check_audio_files`` every ``wav.scp`` entry is
    checked as :mod:`sslsv.datadir.audiocheck` describes.
    """
    d = Path(data)
    if not d.is_dir():
        raise DataDirError(d, [Problem(str(d), "no such directory")])
    problems: list[Problem] = []
    required = ["utt2spk", "spk2utt"] + ["wav.scp"] * require_wav + ["feats.scp"] * require_feats
    for name in required:
        if not (d / name).is_file():
            hint = " (or use --no-feats)" if name == "feats.scp" else " (or use --no-wav)" \
                if name == "wav.scp" else ""
            problems.append(Problem(str(d / name), f"required file missing{hint}"))
    if (d / "segments").exists():
        problems.append(Problem(str(d / "segments"), "segment files are not supported; cut the segments "
                                                     "into files"))
    scans: dict[str, Scan] = {}
    for name, spec in [*PER_UTT.items(), *PER_SPK.items(), ("spk2utt", SPK2UTT)]:
        if (d / name).is_file():
            scans[name] = scan_table(d / name, spec)
            problems += scan_problems(scans[name])

    u2s = scans.get("utt2spk")
    if u2s is not None:
        if spk_sort and u2s.unsorted is None:
            prev = None
            for row in u2s.first.values():
                spk = row.value.encode()
                if prev is not None and spk < prev[0]:
                    problems.append(Problem(
                        u2s.where(row.lineno),
                        f"utt2spk is not sorted by speaker: speaker {row.value!r} comes after "
                        f"{prev[1]!r}; utterance ids should begin with their speaker id "
                        "(or use --no-spk-sort)"))
                    break
                prev = (spk, row.value)
        for name in PER_UTT:
            if name != "utt2spk" and name in scans:
                problems += coverage_problems(u2s, scans[name])
        utt2spk = {k: r.value for k, r in u2s.first.items()}
        expected = spk2utt_of(utt2spk)
        s2u = scans.get("spk2utt")
        if s2u is not None:
            for row in s2u.first.values():
                want = expected.get(row.key)
                got = row.value.split()
                if want is None:
                    problems.append(Problem(s2u.where(row.lineno),
                                            f"speaker {row.key!r} has no utterance in utt2spk"))
                elif got != want:
                    diff = sorted(set(got) ^ set(want))
                    if not diff:
                        why = "utterances not in C order"
                    elif diff[0] in got:
                        why = (f"utterance {diff[0]!r} is listed but utt2spk gives speaker "
                               f"{utt2spk.get(diff[0])!r}")
                    else:
                        why = f"utterance {diff[0]!r} of utt2spk is not listed"
                    problems.append(Problem(s2u.where(row.lineno), f"speaker {row.key!r} disagrees with "
                                                                   f"utt2spk: {why}"))
            lacking = [s for s in expected if s not in s2u.first]
            if lacking:
                first_utt = expected[lacking[0]][0]
                problems.append(Problem(u2s.where(u2s.first[first_utt].lineno),
                                        f"speaker {lacking[0]!r} is not in spk2utt"
                                        + _more(len(lacking) - 1)))
            for name in PER_SPK:
                if name in scans:
                    problems += coverage_problems(s2u, scans[name], "speaker")
        if (d / "trials").is_file():
            tr = scan_trials(d / "trials")
            problems += scan_problems(tr, unique=False)
            unknown = [(r, u) for r in tr.rows for u in (r.key, r.value.split()[0]) if u not in u2s.first]
            if unknown:
                r, u = unknown[0]
                problems.append(Problem(tr.where(r.lineno), f"unknown utterance {u!r} (not in utt2spk)"
                                        + _more(len({u for _, u in unknown}) - 1), u))
            kinds = {r.value.split()[1] for r in tr.rows}
            if tr.rows and len(kinds) == 1:
                lacking = ({"target", "nontarget"} - kinds).pop()
                problems.append(Problem(tr.where(tr.rows[0].lineno),
                                        f"all {len(tr.rows)} trials are {kinds.pop()}: EER and minDCF need "
                                        f"{lacking} trials too (a test set of one speaker?)"))
    for name in ("feats.scp", "vad.scp", "cmvn.scp"):
        if name in scans:
            problems += _ark_problems(scans[name])

    audio_checked = 0
    if check_audio_files and "wav.scp" in scans:
        wav = scans["wav.scp"]
        bad = check_audio(((k, r.value) for k, r in wav.first.items()), sample_rate, min_samples,
                          run_pipes, jobs)
        audio_checked = len(wav.first)
        problems += [Problem(wav.where(wav.first[u].lineno), why, u) for u, why in bad.items()]
    if problems:
        raise DataDirError(d, problems)
    n_utt = len(u2s.first) if u2s else 0
    n_spk = len({r.value for r in u2s.first.values()}) if u2s else 0
    return Summary(n_utt, n_spk, tuple(sorted(scans)), audio_checked)
