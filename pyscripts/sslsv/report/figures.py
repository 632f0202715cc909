"""The report's figures (matplotlib, written atomically as PNG): the CAMSAT README's correlation heatmaps
and its ``metrics_overtime`` curves (each metric and the number of non-empty clusters per epoch,
several methods on one figure, or one method from several starting C)."""

from __future__ import annotations

import csv
import math
from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from ..cluster.metrics import METRICS  # noqa: E402
from ..tables import atomic_path  # noqa: E402
from .analysis import REGULARISER_NAMES, CorrelationPanel  # noqa: E402
from .collect import ClusterRun  # noqa: E402

METRIC_NAMES = {"acc": "ACC", "ami": "AMI", "nmi": "NMI", "num_clusters": "clusters", "completeness":
                "completeness", "homogeneity": "homogeneity", "fmi": "FMI", "purity": "purity",
                "silhouette": "silhouette", "chs": "CHS", "dbs": "DBS"}
DPI = 100


def _save(fig: plt.Figure, path: Path) -> None:
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=DPI, bbox_inches="tight")
    plt.close(fig)


def heatmap(panels: Sequence[CorrelationPanel], title: str, path: Path) -> None:
    """One heatmap per panel (rows: the eleven metrics; columns: regularisers with their n), shared
    colour scale -1..1; cells without a defined correlation are grey and say n/a."""
    fig, axes = plt.subplots(1, len(panels), figsize=(1.8 + 2.4 * len(panels), 5.2), squeeze=False)
    cmap = matplotlib.colormaps["RdBu_r"].with_extremes(bad="#dddddd")
    im = None
    for k, (ax, p) in enumerate(zip(axes[0], panels, strict=True)):
        im = ax.imshow(np.ma.masked_invalid(p.r), cmap=cmap, vmin=-1, vmax=1, aspect="auto")
        ax.set_xticks(range(len(p.columns)),
                      [f"{REGULARISER_NAMES.get(c, c)}\nn={n}" for c, n in zip(p.columns, p.n, strict=True)])
        ax.set_yticks(range(len(METRICS)), [METRIC_NAMES[m] for m in METRICS] if k == 0 else [])
        ax.set_title(p.title, fontsize=10)
        for i in range(p.r.shape[0]):
            for j in range(p.r.shape[1]):
                v = p.r[i, j]
                txt = "n/a" if math.isnan(v) else f"{v:+.2f}"
                ax.text(j, i, txt, ha="center", va="center", fontsize=8,
                        color="white" if not math.isnan(v) and abs(v) > 0.6 else "black")
    fig.suptitle(f"Pearson r between clustering metrics and EER: {title}", fontsize=11)
    fig.colorbar(im, ax=list(axes[0]), shrink=0.8, label="r with cosine EER (%)")
    _save(fig, path)


def read_curve(path: Path) -> dict[str, np.ndarray]:
    """curve.tsv as columns of floats (missing or empty cells are NaN)."""
    with open(path, encoding="utf-8", newline="") as f:
        rows = list(csv.DictReader(f, delimiter="\t"))
    cols: dict[str, np.ndarray] = {}
    for k in rows[0] if rows else []:
        vals = []
        for r in rows:
            try:
                vals.append(float(r[k]))
            except (TypeError, ValueError):
                vals.append(float("nan"))
        cols[k] = np.asarray(vals)
    return cols


def curve_metrics(curves: Sequence[dict[str, np.ndarray]]) -> list[str]:
    """The metric columns (in Table I's order) found in any curve, the number of clusters last."""
    have = set().union(*(c.keys() for c in curves)) if curves else set()
    return [m for m in METRICS if m in have and m != "num_clusters"] + ["num_clusters"]


def curves(runs: Sequence[tuple[str, ClusterRun]], title: str, path: Path, true_count: int | None) -> None:
    """One panel per metric and one for the number of non-empty clusters, one line per run."""
    data = [(label, read_curve(r.curve)) for label, r in runs if r.curve is not None]
    data = [(label, c) for label, c in data if "epoch" in c and c["epoch"].size]
    if not data:
        return
    metrics = curve_metrics([c for _, c in data])
    ncol = min(4, len(metrics))
    nrow = math.ceil(len(metrics) / ncol)
    fig, axes = plt.subplots(nrow, ncol, figsize=(3.6 * ncol, 2.9 * nrow), squeeze=False)
    colors = matplotlib.colormaps["tab10" if len(data) <= 10 else "tab20"].colors
    for k, m in enumerate(metrics):
        ax = axes[k // ncol][k % ncol]
        for i, (label, c) in enumerate(data):
            if m in c:
                ax.plot(c["epoch"], c[m], label=label, linewidth=1.3, color=colors[i % len(colors)],
                        linestyle=("-", "--", ":")[i // len(colors) % 3])
        if m == "num_clusters" and true_count:
            ax.axhline(true_count, color="black", linestyle="--", linewidth=1, label=f"true ({true_count})")
        ax.set_title("non-empty clusters" if m == "num_clusters" else METRIC_NAMES[m], fontsize=10)
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
    for k in range(len(metrics), nrow * ncol):
        axes[k // ncol][k % ncol].axis("off")
    handles, labels = axes[(len(metrics) - 1) // ncol][(len(metrics) - 1) % ncol].get_legend_handles_labels()
    fig.suptitle(title, fontsize=11)
    fig.tight_layout()
    fig.legend(handles, labels, loc="center left", bbox_to_anchor=(1.0, 0.5), fontsize=8)
    _save(fig, path)
