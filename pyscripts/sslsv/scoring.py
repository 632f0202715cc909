"""Trial scoring and the verification metrics, with Kaldi's definitions: the one module that the
i-vector baseline and the embedding stages share.

* Trials files are Kaldi's ``<enroll> <test> target|nontarget`` lines; score files are
  ``<enroll> <test> <score>`` lines, written with 6 significant digits as Kaldi's
  ``ivector-plda-scoring`` writes them (C++ default stream precision).
* :func:`compute_eer` is the exact loop of Kaldi's ``compute-eer`` (a coarse, asymmetric
  approximation with resolution 1/N_target: docs/ivector.md §8.1); it compares in float32, because
  ``compute-eer`` reads the scores as ``BaseFloat``.
* :func:`compute_min_dcf` is Kaldi's ``sid/compute_min_dcf.py`` (docs/ivector.md §8.2): scores sorted
  ascending with a stable sort (ties keep trial order), the trial at the threshold counts as rejected,
  the "accept everything" point is never evaluated, the first minimum wins, normalised by
  ``min(c_miss p_t, c_fa (1 − p_t))``. Vectorised (cumulative sums), float64 as Python floats.
* :func:`evaluate` gives the numbers a stage reports (EER in percent, minDCF at p_target 0.01, 0.001
  and 0.05), :func:`summary_line` the one-line human summary and :func:`write_result` the JSON file.

``result.json`` keys: ``num_trials``, ``num_target``, ``num_nontarget``, ``eer`` (percent, as
``compute-eer`` prints it before rounding), ``eer_threshold``, ``min_dcf_0.01``, ``min_dcf_0.001``,
``min_dcf_0.05`` and their ``*_threshold``, ``c_miss``, ``c_fa``; the step scripts add the back-end
description (``label``, ``backend``, options, input files).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

import numpy as np

from .tables import DataError, atomic_path

P_TARGETS = (0.01, 0.001, 0.05)
_LABELS = {"target": True, "nontarget": False}


class Trials(list):
    """A list of ``(enroll, test, is_target)`` that remembers its file and the line of each trial,
    so later errors (a trial with no vector or no score) can name ``file:line``."""

    def __init__(self, items: Iterable[tuple[str, str, bool]] = (), path: str | os.PathLike | None = None,
                 lines: Sequence[int] | None = None) -> None:
        super().__init__(items)
        self.path = str(path) if path is not None else None
        self.lines = list(lines) if lines is not None else list(range(1, len(self) + 1))

    def where(self, i: int) -> str:
        """``file:line`` of trial ``i`` (``trial i+1`` when the trials have no file)."""
        return f"{self.path}:{self.lines[i]}" if self.path else f"trial {i + 1}"


def _where(trials: Sequence, i: int) -> str:
    return trials.where(i) if isinstance(trials, Trials) else f"trial {i + 1}"


def read_trials(path: str | os.PathLike) -> Trials:
    """Read a Kaldi trials file ``<enroll> <test> target|nontarget`` (blank lines skipped).

    Raises :class:`DataError` naming ``path:line`` for a wrong field count, an unknown label or a
    duplicated pair, and for a file with no trials.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: no such trials file")
    items: list[tuple[str, str, bool]] = []
    lines: list[int] = []
    seen: dict[tuple[str, str], int] = {}
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            parts = line.split()
            if not parts:
                continue
            if len(parts) != 3:
                raise DataError(f"{path}:{lineno}: expected '<enroll> <test> target|nontarget', "
                                f"got {len(parts)} fields: {line.rstrip()!r}")
            e, t, lab = parts
            if lab not in _LABELS:
                raise DataError(f"{path}:{lineno}: label must be 'target' or 'nontarget', got {lab!r}")
            if (e, t) in seen:
                raise DataError(f"{path}:{lineno}: duplicate trial {e} {t} (first on line {seen[e, t]})")
            seen[e, t] = lineno
            items.append((e, t, _LABELS[lab]))
            lines.append(lineno)
    if not items:
        raise DataError(f"{path}: no trials")
    return Trials(items, path, lines)


def read_scores(path: str | os.PathLike) -> dict[tuple[str, str], float]:
    """Read ``<enroll> <test> <score>`` lines into ``{(enroll, test): score}`` (file order kept)."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: no such scores file")
    out: dict[tuple[str, str], float] = {}
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            parts = line.split()
            if not parts:
                continue
            if len(parts) != 3:
                raise DataError(f"{path}:{lineno}: expected '<enroll> <test> <score>', "
                                f"got {len(parts)} fields: {line.rstrip()!r}")
            try:
                s = float(parts[2])
            except ValueError:
                raise DataError(f"{path}:{lineno}: score is not a number: {parts[2]!r}") from None
            if not math.isfinite(s):
                raise DataError(f"{path}:{lineno}: score is not finite: {parts[2]!r}")
            if (parts[0], parts[1]) in out:
                raise DataError(f"{path}:{lineno}: duplicate score for {parts[0]} {parts[1]}")
            out[parts[0], parts[1]] = s
    return out


def labelled_scores(scores_path: str | os.PathLike, trials_path: str | os.PathLike
                    ) -> tuple[np.ndarray, np.ndarray]:
    """``(scores, is_target)`` of a scores file against a trials file, in the scores file's order (ties
    keep it, as Kaldi's stable sort does). The contract of Kaldi's ``compute_min_dcf.py``, used by both
    command-line scorers: a score whose trial is not in the trials file is a :class:`DataError`; trials
    without a score are left out."""
    labels = {(e, t): lab for e, t, lab in read_trials(trials_path)}
    scores = read_scores(scores_path)
    missing = next((k for k in scores if k not in labels), None)
    if missing:
        raise DataError(f"{scores_path}: no trial {missing[0]} {missing[1]} in {trials_path}")
    return (np.fromiter(scores.values(), dtype=np.float64, count=len(scores)),
            np.array([labels[k] for k in scores], dtype=bool))


def format_score(s: float) -> str:
    """A score as Kaldi's ``ivector-plda-scoring`` writes it (C++ default precision: 6 digits)."""
    return f"{s:.6g}"


def write_scores(path: str | os.PathLike, trials: Sequence[tuple[str, str, bool]] | Sequence[tuple[str, str]],
                 scores: np.ndarray) -> None:
    """Write ``<enroll> <test> <score>`` lines in trial order, atomically."""
    scores = np.asarray(scores, dtype=np.float64)
    if len(scores) != len(trials):
        raise ValueError(f"{len(trials)} trials but {len(scores)} scores")
    with atomic_path(path) as tmp, open(tmp, "w", encoding="utf-8") as f:
        f.writelines(f"{tr[0]} {tr[1]} {s:.6g}\n" for tr, s in zip(trials, scores.tolist(), strict=True))


def check_trials_keys(trials: Sequence[tuple[str, str, bool]], keys: Iterable[str] | Mapping,
                      what: str = "vectors") -> None:
    """Raise :class:`DataError` naming the trials file and line of the first trial whose enrollment
    or test utterance is not among ``keys`` (e.g. the keys of ``test.scp``)."""
    keys = keys if isinstance(keys, (set, frozenset, Mapping)) else set(keys)
    for i, (e, t, _) in enumerate(trials):
        for u in (e, t):
            if u not in keys:
                raise DataError(f"{_where(trials, i)}: utterance {u!r} has no vector in {what}")


def compute_eer(target_scores: Sequence[float] | np.ndarray, nontarget_scores: Sequence[float] | np.ndarray
                ) -> tuple[float, float]:
    """Kaldi ``compute-eer``: ``(eer, threshold)``, the EER as a fraction.

    Literally (docs/ivector.md §8.1), with both lists sorted ascending::

        p = 0
        while p + 1 < Nt:
            q = max(Nn - 1 - int(Nn * p / Nt), 0)
            if non[q] < tar[p]: break
            p += 1
        eer = p / Nt; threshold = tar[p]

    evaluated for all ``p`` at once. Scores are compared as float32 (Kaldi's ``BaseFloat``); the
    returned EER is the float32 value of ``p / Nt``.
    """
    tar = np.sort(np.asarray(target_scores, dtype=np.float32).ravel())
    non = np.sort(np.asarray(nontarget_scores, dtype=np.float32).ravel())
    nt, nn = len(tar), len(non)
    if nt == 0 or nn == 0:
        raise ValueError(f"compute_eer needs target and nontarget scores (got {nt} and {nn})")
    p = np.arange(nt - 1, dtype=np.int64)
    k = np.floor((nn * p).astype(np.float64) / nt).astype(np.int64)  # nontarget_size * p * 1.0 / target_size
    q = np.maximum(nn - 1 - k, 0)
    hit = np.flatnonzero(non[q] < tar[p])
    pos = int(hit[0]) if len(hit) else nt - 1
    return float(np.float32(pos / nt)), float(tar[pos])


def compute_min_dcf(scores: Sequence[float] | np.ndarray, labels: Sequence[bool] | np.ndarray,
                    p_target: float, c_miss: float = 1.0, c_fa: float = 1.0) -> tuple[float, float]:
    """Kaldi ``sid/compute_min_dcf.py``: ``(min_dcf, threshold)`` (docs/ivector.md §8.2).

    After a stable ascending sort, at each position i (threshold = score[i], the trial at i rejected):
    ``FNR_i = #targets in 0..i / #targets``, ``FPR_i = 1 − #nontargets in 0..i / #nontargets``,
    ``C_i = c_miss FNR_i p_t + c_fa FPR_i (1 − p_t)``; the first minimum over i, divided by
    ``min(c_miss p_t, c_fa (1 − p_t))``.
    """
    s = np.asarray(scores, dtype=np.float64).ravel()
    lab = np.asarray(labels, dtype=bool).ravel()
    if len(s) != len(lab):
        raise ValueError(f"{len(s)} scores but {len(lab)} labels")
    n_tar = int(lab.sum())
    n_non = len(lab) - n_tar
    if n_tar == 0 or n_non == 0:
        raise ValueError(f"compute_min_dcf needs target and nontarget trials (got {n_tar} and {n_non})")
    order = np.argsort(s, kind="stable")
    lab_sorted = lab[order].astype(np.float64)
    fnr = np.cumsum(lab_sorted) / n_tar
    fpr = 1.0 - np.cumsum(1.0 - lab_sorted) / n_non
    c_det = c_miss * fnr * p_target + c_fa * fpr * (1.0 - p_target)
    i = int(np.argmin(c_det))  # first occurrence of the minimum, as the strict '<' scan
    c_def = min(c_miss * p_target, c_fa * (1.0 - p_target))
    return float(c_det[i] / c_def), float(s[order[i]])


def evaluate(trials: Sequence[tuple[str, str, bool]], scores: Mapping[tuple[str, str], float],
             p_targets: Sequence[float] = P_TARGETS, c_miss: float = 1.0, c_fa: float = 1.0) -> dict:
    """EER (percent) and minDCF at each ``p_target`` of the scores of ``trials``.

    Every trial must have a score: a missing one is a :class:`DataError` naming the trials file and
    line (its utterance had no vector). Scores not in the trials are ignored. The minDCF sort runs over
    the trials in file order, as Kaldi's script does over a scores file written in trial order.
    """
    n = len(trials)
    vals = np.empty(n, dtype=np.float64)
    labels = np.empty(n, dtype=bool)
    for i, (e, t, lab) in enumerate(trials):
        s = scores.get((e, t))
        if s is None:
            raise DataError(f"{_where(trials, i)}: no score for trial {e} {t} "
                            "(an utterance of the trial has no vector)")
        vals[i] = s
        labels[i] = lab
    eer, thr = compute_eer(vals[labels], vals[~labels])
    out: dict = {"num_trials": n, "num_target": int(labels.sum()), "num_nontarget": int((~labels).sum()),
                 "eer": 100.0 * eer, "eer_threshold": thr}
    for pt in p_targets:
        v, th = compute_min_dcf(vals, labels, pt, c_miss, c_fa)
        out[f"min_dcf_{pt:g}"] = v
        out[f"min_dcf_{pt:g}_threshold"] = th
    out["c_miss"] = c_miss
    out["c_fa"] = c_fa
    return out


def summary_line(result: Mapping, label: str | None = None) -> str:
    """``EER 5.33 %  minDCF(0.01) 0.4933  minDCF(0.001) 0.6168  (37720 trials)``, optionally
    prefixed by ``label: ``."""
    line = (f"EER {result['eer']:.2f} %  minDCF(0.01) {result['min_dcf_0.01']:.4f}  "
            f"minDCF(0.001) {result['min_dcf_0.001']:.4f}  ({result['num_trials']} trials)")
    return f"{label}: {line}" if label else line


def write_result(path: str | os.PathLike, result: Mapping) -> None:
    """Write ``result`` as indented JSON, atomically."""
    with atomic_path(path) as tmp:
        Path(tmp).write_text(json.dumps(dict(result), indent=2) + "\n", encoding="utf-8")


def main(argv: list[str] | None = None) -> int:
    """``python3 -m sslsv.scoring summary RESULT [KEY ...]``: the summary line of a ``result.json``
    (of its ``KEY`` sections, one line each, when the file holds several, e.g. ``cosine asnorm``)."""
    ap = argparse.ArgumentParser(prog="python3 -m sslsv.scoring")
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("summary", help="print the summary line(s) of a result.json")
    p.add_argument("result")
    p.add_argument("keys", nargs="*", help="sections of the file to summarise (default: the file)")
    a = ap.parse_args(argv)
    r = json.loads(Path(a.result).read_text(encoding="utf-8"))
    for part in [r[k] for k in a.keys] if a.keys else [r]:
        print(summary_line(part, part.get("label")))
    return 0


if __name__ == "__main__":
    sys.exit(main())
