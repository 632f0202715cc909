"""Stage 7: a Kaldi data dir whose speakers are clusters.

The training data dir is copied with every per-utterance table (wav.scp, feats.scp, vad.scp,
utt2num_frames, utt2dur, utt2uniq, ...) restricted to the kept utterances, ``utt2spk`` mapping each
utterance to its cluster (``pl00017``: the cluster index, zero-padded) and ``spk2utt`` rebuilt. Clusters
smaller than ``min_cluster_size`` and utterances a method left unassigned (label -1) are dropped, and the
counts are reported. Per-speaker tables of the true speakers (``spk2gender``) and trial lists are not
carried over: the result holds no trace of the true labels, and any recipe can train on it as on a
labelled data dir (Kaldi's ``validate_data_dir.sh --no-spk-sort`` form: utterance ids do not start with
the pseudo speaker's id, so the two sort orders differ).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from .datadir.layout import load_tables, write_subset
from .tables import DataError, atomic_path, read_table


@dataclass
class PseudoLabelReport:
    utterances: int
    speakers: int
    dropped_utterances: int
    dropped_clusters: int
    unassigned: int
    missing: int


def read_labels(path: str | os.PathLike) -> dict[str, int]:
    """``<utt> <cluster>`` lines (stage 6's ``labels``) as a dict; the cluster must be an integer."""
    out: dict[str, int] = {}
    for lineno, (key, rest) in enumerate(read_table(path, 2, 2), 1):
        try:
            out[key] = int(rest[0])
        except ValueError:
            raise DataError(f"{path}:{lineno}: cluster {rest[0]!r} of {key!r} is not an integer") from None
    if not out:
        raise DataError(f"{path}: no labels")
    return out


def make_pseudo_label_dir(src: str | os.PathLike, labels: str | os.PathLike, dest: str | os.PathLike,
                          min_cluster_size: int = 2, prefix: str = "pl") -> PseudoLabelReport:
    """Write data dir ``dest``: ``src`` relabelled by the clusters in ``labels`` (see the module doc).
    Utterances of ``src`` without a label (e.g. no voiced frames, so no i-vector) are dropped and
    counted; a label naming an utterance ``src`` lacks is an error."""
    tables = load_tables(src)
    lab = read_labels(labels)
    unknown = [u for u in lab if u not in tables.utt2spk]
    if unknown:
        raise DataError(f"{labels}: utterance {unknown[0]!r} is not in {src} "
                        f"({len(unknown)} such; labels of another data set?)")
    utts = [u for u in tables.utts if u in lab]
    missing = len(tables.utt2spk) - len(utts)
    c = np.array([lab[u] for u in utts], dtype=np.int64)
    assigned = c >= 0
    ids, counts = np.unique(c[assigned], return_counts=True)
    big = ids[counts >= min_cluster_size]
    keep = assigned & np.isin(c, big)
    width = max(5, len(str(int(big.max())))) if len(big) else 5
    u2s = {u: f"{prefix}{int(k):0{width}d}" for u, k, ok in zip(utts, c, keep, strict=True) if ok}
    if not u2s:
        raise DataError(f"{labels}: no cluster has at least {min_cluster_size} utterances")
    per_utt = {name: t for name, t in tables.per_utt.items() if name != "utt2spk"}
    per_utt["utt2spk"] = u2s
    relabelled = replace(tables, utt2spk=u2s, per_utt=per_utt, per_spk={}, trials=None)
    n_utt, n_spk = write_subset(relabelled, dest, u2s.keys(), trials=False)
    report = PseudoLabelReport(n_utt, n_spk, int(assigned.sum() - keep.sum()),
                               int(len(ids) - len(big)), int((~assigned).sum()), missing)
    with atomic_path(Path(dest) / "pseudo_labels.json") as tmp:
        tmp.write_text(json.dumps({"labels": str(labels), "source": str(src),
                                   "min_cluster_size": min_cluster_size, **report.__dict__}, indent=2) + "\n")
    return report
