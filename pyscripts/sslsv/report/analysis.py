"""The report's numbers, computed from :class:`~sslsv.report.collect.Results`: which system stands for a
pseudo-label set, the margin-loss and regulariser grids, and the Pearson correlations between the
clustering metrics and the EER (the CAMSAT README's heatmaps), for all systems and for the splits the
papers use.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from scipy.stats import t as student_t

from ..cluster.metrics import METRICS
from ..naming import LABEL_FREE, SUPERVISED
from ..study import HEAD_NAMES, MIXUPS
from .collect import ClusterRun, Results, System

HEADS = HEAD_NAMES
REGULARISERS = MIXUPS
REGULARISER_NAMES = {"none": "No reg.", "imix": "i-mix", "lmix": "l-mix"}

# The splits of the CAMSAT README's heatmaps:
# (figure name, title, [(group label, predicate on the pseudo-label set)])
Split = tuple[str, str, list[tuple[str, Callable[[ClusterRun], bool]]]]
SPLITS: list[Split] = [
    ("all_systems", "all pseudo-label systems", [("all systems", lambda c: True)]),
    ("classical_vs_deep", "classical vs deep clustering",
     [("classical", lambda c: c.family == "classical"), ("deep", lambda c: c.family == "deep")]),
    ("l2_vs_standard", "L2-normalised vs standardised i-vectors",
     [("L2-normalised inputs", lambda c: c.input_norm == "l2"),
      ("standardised inputs", lambda c: c.input_norm == "standard")]),
    ("acc50", "accurate vs noisy pseudo labels",
     [("ACC >= 50 %", lambda c: c.metrics.get("acc", float("nan")) >= 0.5),
      ("ACC < 50 %", lambda c: c.metrics.get("acc", float("nan")) < 0.5)]),
]


@dataclass(frozen=True)
class Reference:
    """The system settings that stand for a pseudo-label set in Table I and the heatmaps."""

    config: str
    head: str


def reference(res: Results, head: str | None = None, config: str | None = None) -> Reference | None:
    """The most common (config, head) among the scored pseudo-label systems with no regulariser (among
    all scored systems when none has no regulariser), unless given; AAM wins a tie (the papers' head)."""
    scored = [s for s in res.systems if s.cosine is not None and s.labels != LABEL_FREE]
    plain = [s for s in scored if s.mixup == "none"] or scored
    if not plain:
        return None
    config = config or Counter(s.config for s in plain).most_common(1)[0][0]
    if head is None:
        counts = Counter(s.head for s in plain if s.config == config)
        top = max(counts.values()) if counts else 0
        tied = [h for h, n in counts.items() if n == top]
        head = "aam" if "aam" in tied or not tied else sorted(tied)[0]
    return Reference(config, head)


def find(res: Results, labels: str, ref: Reference, head: str | None = None, mixup: str = "none"
         ) -> System | None:
    """The system trained on ``labels`` with the reference config, ``head`` (default the reference
    head) and regulariser ``mixup``; the first by name when several alphas exist."""
    head = head or ref.head
    hits = [s for s in res.systems if s.labels == labels and s.config == ref.config and s.head == head
            and s.mixup == mixup]
    return sorted(hits, key=lambda s: s.name)[0] if hits else None


def trained_on(res: Results, labels: str, ref: Reference) -> System | None:
    """:func:`find`'s system for ``labels``, else the first scored one by name trained on them."""
    hit = find(res, labels, ref)
    if hit is not None:
        return hit
    hits = sorted((s for s in res.systems if s.labels == labels), key=lambda s: (s.cosine is None, s.name))
    return hits[0] if hits else None


@dataclass(frozen=True)
class Lineage:
    """Where a pseudo-label set's vectors came from: round 1 clusters i-vectors (or the label-free
    network's embeddings, or any vectors given); round r clusters the embeddings of a network trained on
    round r - 1's labels."""

    round: int
    source: str                     # "i-vectors", "network <name>" or the path clustered
    root: str                       # the round-1 set of the chain (the set itself in round 1)


def lineage(res: Results, tag: str) -> Lineage:
    """The :class:`Lineage` of the pseudo-label set ``tag``, from the ``vectors`` its metrics.json records
    (``exp/<name>/embed/<network>/emb_<set>/xvector.scp`` for a network's embeddings)."""
    seen: set[str] = set()
    rnd, source, cur = 1, "", tag
    while cur not in seen:
        seen.add(cur)
        c = res.clusters.get(cur)
        vec = (c.vectors or "") if c else ""
        parts = Path(vec).parts
        if "embed" not in parts or parts.index("embed") + 1 >= len(parts):
            src = "i-vectors" if "ivector" in vec or not vec else vec
            return Lineage(rnd, source or src, cur)
        net = parts[parts.index("embed") + 1]
        source = source or f"network {net}"
        parent = next((s.labels for s in res.systems if s.name == net), None)
        if parent is None or parent in (LABEL_FREE, SUPERVISED) or parent not in res.clusters:
            return Lineage(rnd, source, cur)
        rnd, cur = rnd + 1, parent
    return Lineage(rnd, source, cur)           # a cycle (hand-edited tree): stop where it closes


def loss_name(head_opts: dict[str, Any]) -> str:
    """The contrastive loss of a label-free network in the papers' words: NT-Xent (no margin) or
    NT-Xent-AM / -AAM with its margin, symmetric or not, and the temperature."""
    from ..embed.heads import head_defaults

    h = {**head_defaults(str(head_opts.get("name", "ntxent"))), **head_opts}
    m = float(h.get("margin", 0.0))
    name = "NT-Xent" if m == 0 else f"NT-Xent-{str(h.get('margin_type', 'am')).upper()} (m = {m:g})"
    return f"{name}, {'symmetric' if h.get('symmetric') else 'asymmetric'}, τ = {float(h['temperature']):g}"


def critical_r(n: int, alpha: float = 0.05) -> float:
    """The |r| above which a Pearson correlation of ``n`` points is significant at ``alpha`` (two-sided
    t-test with n - 2 degrees of freedom); NaN below 3 points."""
    if n < 3:
        return float("nan")
    t = float(student_t.ppf(1 - alpha / 2, n - 2))
    return t / math.sqrt(n - 2 + t * t)


def pearson(x: Sequence[float], y: Sequence[float]) -> float:
    """Pearson's r, or NaN with fewer than 3 points or a constant variable (no correlation is defined)."""
    a, b = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    ok = np.isfinite(a) & np.isfinite(b)
    a, b = a[ok], b[ok]
    if a.size < 3 or np.ptp(a) == 0 or np.ptp(b) == 0:
        return float("nan")
    a, b = a - a.mean(), b - b.mean()
    return float(np.clip((a @ b) / np.sqrt((a @ a) * (b @ b)), -1.0, 1.0))


@dataclass
class CorrelationPanel:
    """Pearson r of every metric with the cosine EER, one column per regulariser."""

    title: str
    columns: list[str]              # regularisers
    n: list[int]                    # systems per column
    r: np.ndarray                   # (len(METRICS), len(columns))
    systems: list[list[str]]        # the systems of each column


def correlation_panel(res: Results, ref: Reference, title: str, keep: Callable[[ClusterRun], bool],
                      columns: Sequence[str] = REGULARISERS) -> CorrelationPanel:
    r = np.full((len(METRICS), len(columns)), np.nan)
    ns, names = [], []
    for j, mix in enumerate(columns):
        pairs = []
        for s in res.systems:
            c = res.clusters.get(s.labels)
            if (c is None or s.cosine is None or s.config != ref.config or s.head != ref.head
                    or s.mixup != mix or not keep(c)):
                continue
            pairs.append((s, c))
        ns.append(len(pairs))
        names.append([s.name for s, _ in pairs])
        eer = [s.cosine.eer for s, _ in pairs]
        for i, m in enumerate(METRICS):
            r[i, j] = pearson([c.metrics.get(m, float("nan")) for _, c in pairs], eer)
    return CorrelationPanel(title, list(columns), ns, r, names)


def correlation_splits(res: Results, ref: Reference) -> list[tuple[str, str, list[CorrelationPanel]]]:
    """Every split of :data:`SPLITS` as (name, title, panels)."""
    return [(name, title, [correlation_panel(res, ref, label, keep) for label, keep in groups])
            for name, title, groups in SPLITS]


def grid(res: Results, ref: Reference, rows: Sequence[str], columns: Sequence[str], by: str
         ) -> list[list[System | None]]:
    """Systems of ``rows`` (label sets) x ``columns`` (heads when ``by == "head"`` with no regulariser,
    else regularisers with the reference head)."""
    out = []
    for labels in rows:
        if by == "head":
            out.append([find(res, labels, ref, head=h) for h in columns])
        else:
            out.append([find(res, labels, ref, mixup=m) for m in columns])
    return out


def ordered_sets(res: Results, sets: set[str]) -> list[str]:
    """Label sets in table order (:func:`cluster_order`), the true labels last."""
    return sorted(sets - {SUPERVISED}, key=cluster_order(res)) + ([SUPERVISED] if SUPERVISED in sets
                                                                       else [])


def cluster_order(res: Results) -> Callable[[str], tuple]:
    """Sort key of label sets: classical before deep, then by C asked, then by name."""
    def key(tag: str) -> tuple:
        c = res.clusters.get(tag)
        if c is None:
            return (2, 0, tag)
        return (0 if c.family == "classical" else 1, c.requested or 0, tag)
    return key
