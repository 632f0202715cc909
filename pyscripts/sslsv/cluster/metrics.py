"""Clustering metrics of the CIMC paper's Table I, fast enough for VoxCeleb2 scale.

:func:`clustering_metrics` returns, in this order, ``acc, ami, nmi, num_clusters, completeness,
homogeneity, fmi, purity, silhouette, chs, dbs`` (docs/algorithms.md §7). The supervised ones come from one
sparse contingency table built by sorting integer codes; the geometric ones from per-cluster sums in
float64. Every value equals scikit-learn's function of the same name (``silhouette_score`` with
``sample_size`` / ``random_state``, ``calinski_harabasz_score``, ``davies_bouldin_score``,
``adjusted_mutual_info_score`` ...) up to float64 rounding, but the whole set runs in well under a minute
on 1.09 M points, 6,000 classes and 10,000 clusters, where scikit-learn's AMI alone takes many minutes
(its expected mutual information loops over every class-cluster pair, scikit-learn issue #24254) and a
dense Hungarian assignment needs a 10,000 x 6,000 matrix.

How:

* ACC (best one-to-one map clusters -> classes) is a maximum-weight bipartite matching restricted to the
  nonzero cells of the contingency table, completed with one zero-weight dummy partner per class so that
  a full matching always exists (``scipy.sparse.csgraph.min_weight_full_bipartite_matching``). A pair
  with no shared sample adds nothing, so the optimum equals that of the dense rectangular assignment.
* EMI (for AMI) depends only on the class and cluster sizes: the sum over class x cluster pairs becomes a
  sum over *distinct* size pairs weighted by their multiplicities. Each size pair's hypergeometric sum is
  evaluated outwards from the mode with a log-factorial table, for all pairs at once, and a pair stops
  once its probability falls below ``exp(-120)``: the distribution is log-concave, so every later term is
  smaller, and what is left out is far below float64 resolution of the result. The log-factorial
  differences carry an absolute error of about eps * log(N!) (1e-11 at N = 5,000, ~3e-9 at N = 1.09 M)
  in each log-probability, as in scikit-learn's own EMI; an exact big-integer check found ours closer.
* Distances to a centroid are norms of differences, so a singleton cluster's spread is exactly 0
  (scikit-learn's Gram-matrix shortcut gives ~1e-8 there, which moves DBS by ~1e-9 relative).
* Cost: DBS compares all K x K centroid pairs (O(K^2 d), as in scikit-learn): about 2 s of one core for
  K = 10,000, d = 400, but it grows quadratically, e.g. when every unassigned point is its own cluster.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import scipy.sparse as sp
from scipy.sparse.csgraph import min_weight_full_bipartite_matching
from scipy.special import gammaln

METRICS: tuple[str, ...] = ("acc", "ami", "nmi", "num_clusters", "completeness", "homogeneity", "fmi",
                            "purity", "silhouette", "chs", "dbs")
SUPERVISED = frozenset({"acc", "ami", "nmi", "completeness", "homogeneity", "fmi", "purity"})
GEOMETRIC = frozenset({"silhouette", "chs", "dbs"})

_EPS = float(np.finfo(np.float64).eps)
_LOG_TINY = -120.0      # hypergeometric log-probability below which EMI terms are dropped
_ROWS = 1024            # rows per chunk in the passes over X (keeps float64 temporaries in cache)
_BLOCK = 1024           # rows per block of a pairwise-distance matrix


def _encode(labels: Any, what: str) -> tuple[np.ndarray, int]:
    """Integer codes 0..L-1 (in sorted label order) of a 1-D label array, and L."""
    arr = np.asarray(labels)
    if arr.ndim != 1:
        raise ValueError(f"{what} must be 1-D, got shape {arr.shape}")
    if arr.size == 0:
        raise ValueError(f"{what} is empty")
    uniq, codes = np.unique(arr, return_inverse=True)
    return codes.astype(np.int64, copy=False).ravel(), int(uniq.size)


@dataclass(frozen=True)
class _Table:
    """Sparse contingency table: nonzero cells sorted by (cluster, class), and the marginals."""

    n: int
    cluster: np.ndarray        # (nnz,) cluster code of each nonzero cell
    klass: np.ndarray          # (nnz,) class code
    count: np.ndarray          # (nnz,) int64 count
    cluster_sizes: np.ndarray  # (K,)
    class_sizes: np.ndarray    # (C,)


def _table(true_codes: np.ndarray, n_classes: int, pred_codes: np.ndarray, n_clusters: int) -> _Table:
    key = pred_codes * n_classes + true_codes
    cells, count = np.unique(key, return_counts=True)
    return _Table(n=int(pred_codes.size), cluster=cells // n_classes, klass=cells % n_classes,
                  count=count.astype(np.int64), cluster_sizes=np.bincount(pred_codes, minlength=n_clusters),
                  class_sizes=np.bincount(true_codes, minlength=n_classes))


def contingency(labels_true: Any, labels_pred: Any) -> sp.csr_array:
    """Sparse int64 counts ``W[j, k] = #{i : true_i = j-th class, pred_i = k-th cluster}`` with classes
    and clusters in sorted label order: the layout of sklearn's ``contingency_matrix(sparse=True)``
    (rows are classes; docs/algorithms.md §7 writes the transpose)."""
    t, c = _encode(labels_true, "labels_true")
    p, k = _encode(labels_pred, "labels_pred")
    _same_length(t, p)
    tab = _table(t, c, p, k)
    return sp.csr_array((tab.count, (tab.klass, tab.cluster)), shape=(c, k))


def _same_length(t: np.ndarray, p: np.ndarray) -> None:
    if t.size != p.size:
        raise ValueError(f"labels_true has {t.size} entries but labels_pred has {p.size}")


def _matched_weight(tab: _Table) -> int:
    """Largest total count of a one-to-one matching between clusters and classes (exact)."""
    n_classes, n_clusters = tab.class_sizes.size, tab.cluster_sizes.size
    # Cost M - W on real cells, M on class j's dummy partner (column K + j): a full matching of the
    # classes minimises C*M - (matched counts), i.e. maximises the matched counts; costs stay > 0 so no
    # edge is taken for a missing one.
    big = float(tab.count.max()) + 1.0
    rows = np.concatenate([tab.klass, np.arange(n_classes)])
    cols = np.concatenate([tab.cluster, n_clusters + np.arange(n_classes)])
    cost = np.concatenate([big - tab.count, np.full(n_classes, big)])
    graph = sp.csr_array((cost, (rows, cols)), shape=(n_classes, n_clusters + n_classes))
    r, c = min_weight_full_bipartite_matching(graph)
    real = c < n_clusters
    return int(round(float(np.sum(big - graph[r[real], c[real]]))))


def hungarian_accuracy(labels_true: Any, labels_pred: Any) -> float:
    """Unsupervised clustering accuracy: the best one-to-one map clusters -> classes, as the fraction of
    samples it gets right; with K != C clusters only min(K, C) are matched, the rest count as errors."""
    t, c = _encode(labels_true, "labels_true")
    p, k = _encode(labels_pred, "labels_pred")
    _same_length(t, p)
    return _matched_weight(_table(t, c, p, k)) / t.size


def _entropy(sizes: np.ndarray, n: int) -> float:
    s = sizes[sizes > 0].astype(np.float64)
    if s.size <= 1:
        return 0.0
    return float(math.log(n) - np.dot(s, np.log(s)) / n)


def _mutual_info(tab: _Table) -> float:
    if tab.class_sizes.size == 1 or tab.cluster_sizes.size == 1:
        return 0.0
    cnt = tab.count.astype(np.float64)
    terms = cnt * (np.log(cnt) + math.log(tab.n) - np.log(tab.class_sizes[tab.klass].astype(np.float64))
                   - np.log(tab.cluster_sizes[tab.cluster].astype(np.float64)))
    return max(float(terms.sum()) / tab.n, 0.0)


def _expected_mutual_info(a: np.ndarray, b: np.ndarray, n: int) -> float:
    """E[MI] of two random labelings with class sizes ``a`` and cluster sizes ``b`` (hypergeometric
    model of Vinh et al. 2010), summed over distinct size pairs."""
    if a.size == 1 or b.size == 1:
        return 0.0
    ua, ma = np.unique(a, return_counts=True)
    ub, mb = np.unique(b, return_counts=True)
    A = np.repeat(ua, ub.size).astype(np.int64)
    B = np.tile(ub, ua.size).astype(np.int64)
    weight = np.outer(ma.astype(np.float64), mb.astype(np.float64)).ravel()
    lf = gammaln(np.arange(n + 1, dtype=np.float64) + 1.0)       # log k!
    const = lf[A] + lf[B] + lf[n - A] + lf[n - B] - lf[n]
    lo = np.maximum(1, A + B - n)                                # n_ij = 0 adds nothing
    hi = np.minimum(A, B)
    start = np.clip((A + 1) * (B + 1) // (n + 2), lo, hi)       # the mode of the hypergeometric
    log_ab = np.log(A.astype(np.float64)) + np.log(B.astype(np.float64))
    log_n = math.log(n)
    total = np.zeros(A.size)
    for step, first in ((1, start), (-1, start - 1)):
        idx = np.flatnonzero((first >= lo) & (first <= hi))
        k = first[idx]
        while idx.size:
            ai, bi = A[idx], B[idx]
            logp = const[idx] - lf[k] - lf[ai - k] - lf[bi - k] - lf[n - ai - bi + k]
            kf = k.astype(np.float64)
            total[idx] += kf / n * (log_n + np.log(kf) - log_ab[idx]) * np.exp(logp)
            k = k + step
            keep = (logp > _LOG_TINY) & (k >= lo[idx]) & (k <= hi[idx])
            idx, k = idx[keep], k[keep]
    return float(np.dot(weight, total))


def _clamp(x: float) -> float:
    """Keep a value at least eps away from 0, with its sign (sklearn's AMI guard)."""
    return min(x, -_EPS) if x < 0 else max(x, _EPS)


def _supervised(tab: _Table, wanted: set[str]) -> dict[str, float]:
    out: dict[str, float] = {}
    n, n_classes, n_clusters = tab.n, tab.class_sizes.size, tab.cluster_sizes.size
    if "acc" in wanted:
        out["acc"] = _matched_weight(tab) / n
    if "purity" in wanted:
        starts = np.flatnonzero(np.r_[True, tab.cluster[1:] != tab.cluster[:-1]])
        out["purity"] = float(np.maximum.reduceat(tab.count, starts).sum()) / n
    if "fmi" in wanted:
        tk = int(np.dot(tab.count, tab.count)) - n
        pk = int(np.dot(tab.cluster_sizes, tab.cluster_sizes)) - n
        qk = int(np.dot(tab.class_sizes, tab.class_sizes)) - n
        out["fmi"] = math.sqrt(tk / pk) * math.sqrt(tk / qk) if tk != 0 else 0.0
    if wanted & {"ami", "nmi", "completeness", "homogeneity"}:
        mi = _mutual_info(tab)
        h_true, h_pred = _entropy(tab.class_sizes, n), _entropy(tab.cluster_sizes, n)
        single = n_classes == n_clusters == 1           # nothing split on either side: a perfect match
        if "nmi" in wanted:
            out["nmi"] = 1.0 if single else 0.0 if mi == 0 else mi / ((h_true + h_pred) / 2)
        if "ami" in wanted:
            if single:
                out["ami"] = 1.0
            elif n_classes == 1 or n_clusters == 1:
                out["ami"] = 0.0
            else:
                emi = _expected_mutual_info(tab.class_sizes, tab.cluster_sizes, n)
                out["ami"] = _clamp(mi - emi) / _clamp((h_true + h_pred) / 2 - emi)
        if "homogeneity" in wanted:
            out["homogeneity"] = mi / h_true if h_true else 1.0
        if "completeness" in wanted:
            out["completeness"] = mi / h_pred if h_pred else 1.0
    return out


def _to64(block: np.ndarray) -> np.ndarray:
    return block.astype(np.float64, copy=False)


def _sq_dists(a: np.ndarray, a_sq: np.ndarray, b: np.ndarray, b_sq: np.ndarray) -> np.ndarray:
    """Squared Euclidean distances ||a||^2 + ||b||^2 - 2 a.b (float64, clipped at 0)."""
    d = a @ b.T
    d *= -2.0
    d += a_sq[:, None]
    d += b_sq[None, :]
    np.maximum(d, 0.0, out=d)
    return d


def _chs_dbs(X: np.ndarray, codes: np.ndarray, k: int, wanted: set[str]) -> dict[str, float]:
    """Calinski-Harabasz and Davies-Bouldin scores from per-cluster sums (two chunked passes over X)."""
    n, dim = X.shape
    sizes = np.bincount(codes, minlength=k).astype(np.float64)
    order = np.argsort(codes, kind="stable")
    sorted_codes = codes[order]
    sums = np.zeros((k, dim))
    for s in range(0, n, _ROWS):           # pass 1: cluster sums, in cluster order so reduceat applies
        c = sorted_codes[s:s + _ROWS]
        starts = np.flatnonzero(np.r_[True, c[1:] != c[:-1]])
        sums[c[starts]] += np.add.reduceat(_to64(X[order[s:s + _ROWS]]), starts, axis=0)
    if not np.isfinite(sums).all():
        raise ValueError("X contains NaN or infinite values")
    means = sums / sizes[:, None]
    dist_sum = np.zeros(k)                 # pass 2: distance of every point to its own centroid
    intra_sq = 0.0
    for s in range(0, n, _ROWS):
        c = codes[s:s + _ROWS]
        diff = _to64(X[s:s + _ROWS]) - means[c]
        d2 = np.einsum("ij,ij->i", diff, diff)
        intra_sq += float(d2.sum())
        dist_sum += np.bincount(c, np.sqrt(d2), minlength=k)
    out: dict[str, float] = {}
    if "chs" in wanted:
        centre = sums.sum(axis=0) / n
        extra = float(np.dot(sizes, ((means - centre) ** 2).sum(axis=1)))
        out["chs"] = 1.0 if intra_sq == 0.0 else extra * (n - k) / (intra_sq * (k - 1.0))
    if "dbs" in wanted:
        spread = dist_sum / sizes          # mean distance to the centroid, per cluster
        sq = np.einsum("ij,ij->i", means, means)
        row_max = np.zeros(k)
        col_max = np.zeros(k)
        far = 0.0
        for s in range(0, k, _BLOCK):      # upper triangle only: the ratio matrix is symmetric
            e = min(s + _BLOCK, k)
            dist = np.sqrt(_sq_dists(means[s:e], sq[s:e], means[s:], sq[s:]))
            dist[np.arange(e - s), np.arange(e - s)] = 0.0
            far = max(far, float(dist.max()))
            dist[dist == 0.0] = np.inf     # a cluster is not compared with itself (or a coincident one)
            ratio = (spread[s:e, None] + spread[None, s:]) / dist
            row_max[s:e] = np.maximum(row_max[s:e], ratio.max(axis=1))
            col_max[s:] = np.maximum(col_max[s:], ratio.max(axis=0))
        if np.all(np.abs(spread) <= 1e-8) or far <= 1e-8:
            out["dbs"] = 0.0               # sklearn's convention for degenerate clusterings
        else:
            out["dbs"] = float(np.maximum(row_max, col_max).mean())
    return out


def _silhouette(X: np.ndarray, codes: np.ndarray, sample: int | None, random_state: int) -> float:
    """Mean silhouette (Euclidean) over ``sample`` points drawn exactly as sklearn's
    ``silhouette_score(sample_size=sample, random_state=random_state)`` draws them."""
    if sample is not None:
        idx = np.random.RandomState(random_state).permutation(X.shape[0])[:sample]
        codes = codes[idx]
    else:
        idx = np.arange(X.shape[0])
    lab, sub = np.unique(codes, return_inverse=True)
    m = idx.size
    if not 2 <= lab.size <= m - 1:
        return float("nan")
    order = np.argsort(sub, kind="stable")   # columns grouped by label so that reduceat sums them
    sub = sub[order]
    xs = _to64(X[idx[order]])
    if not np.isfinite(xs).all():
        raise ValueError("X contains NaN or infinite values")
    freq = np.bincount(sub).astype(np.float64)
    starts = np.flatnonzero(np.r_[True, sub[1:] != sub[:-1]])
    sq = np.einsum("ij,ij->i", xs, xs)
    score = np.empty(m)
    for s in range(0, m, _BLOCK):
        e = min(s + _BLOCK, m)
        dist = np.sqrt(_sq_dists(xs[s:e], sq[s:e], xs, sq))
        rows = np.arange(e - s)
        dist[rows, rows + s] = 0.0
        per_label = np.add.reduceat(dist, starts, axis=1)   # (rows, labels): summed distances
        own = sub[s:e]
        with np.errstate(divide="ignore", invalid="ignore"):
            a = per_label[rows, own] / (freq[own] - 1.0)     # 0/0 for a singleton -> score 0 below
            per_label /= freq
            per_label[rows, own] = np.inf
            b = per_label.min(axis=1)
            score[s:e] = (b - a) / np.maximum(a, b)
    return float(np.nan_to_num(score).mean())


def clustering_metrics(labels_pred: Any, labels_true: Any = None, X: Any = None, *,
                       silhouette_sample: int | None = 10000, random_state: int = 0,
                       names: Iterable[str] | None = None) -> dict[str, float | int]:
    """The clustering metrics of CIMC Table I, keys in :data:`METRICS` order.

    ``labels_pred``: cluster of each sample (any hashable labels). ``labels_true``: true class (speaker)
    of each sample; without it the supervised metrics (acc, ami, nmi, completeness, homogeneity, fmi,
    purity) are left out. ``X`` (N, d): the clustered vectors; without it silhouette, chs and dbs are
    left out, and they are NaN when there are fewer than 2 or as many clusters as points (as for
    silhouette when its sample has so). Silhouette is Euclidean, over ``silhouette_sample`` points drawn
    with ``random_state`` (None: all points, O(N^2)). ``names`` restricts the computation to those metrics
    (asking for one whose input is missing is an error). ``num_clusters`` is the number of distinct
    predicted labels.
    """
    wanted = set(METRICS) if names is None else set(names)
    unknown = wanted - set(METRICS)
    if unknown:
        raise ValueError(f"unknown metric(s) {sorted(unknown)} (known: {', '.join(METRICS)})")
    if names is not None:
        if labels_true is None and wanted & SUPERVISED:
            raise ValueError(f"{sorted(wanted & SUPERVISED)} need labels_true")
        if X is None and wanted & GEOMETRIC:
            raise ValueError(f"{sorted(wanted & GEOMETRIC)} need X")
    if labels_true is None:
        wanted -= SUPERVISED
    if X is None:
        wanted -= GEOMETRIC
    if silhouette_sample is not None and silhouette_sample < 2:
        raise ValueError(f"silhouette_sample must be >= 2 or None, got {silhouette_sample}")

    pred, n_clusters = _encode(labels_pred, "labels_pred")
    out: dict[str, float | int] = {"num_clusters": n_clusters}
    if wanted & SUPERVISED:
        true, n_classes = _encode(labels_true, "labels_true")
        _same_length(true, pred)
        out.update(_supervised(_table(true, n_classes, pred, n_clusters), wanted))
    if wanted & GEOMETRIC:
        X = np.asarray(X)
        if X.ndim != 2 or X.shape[0] != pred.size or X.shape[1] == 0:
            raise ValueError(f"X must be (N={pred.size}, d>0), got shape {X.shape}")
        if X.dtype.kind not in "fiu":
            raise ValueError(f"X must be numeric, got dtype {X.dtype}")
        n = pred.size
        if "silhouette" in wanted:
            out["silhouette"] = _silhouette(X, pred, silhouette_sample, random_state)
        if wanted & {"chs", "dbs"}:
            if 2 <= n_clusters <= n - 1:
                out.update(_chs_dbs(X, pred, n_clusters, wanted))
            else:
                out.update({m: float("nan") for m in ("chs", "dbs") if m in wanted})
    return {m: out[m] for m in METRICS if m in wanted}


def format_metrics(d: Mapping[str, float | int], keys: Sequence[str] | None = None) -> str:
    """One line ``"acc 0.621 ami 0.802 nmi 0.844 num_clusters 9871 ..."``: integers as they are, floats
    with 3 decimals (1 when >= 1000, e.g. chs), in ``keys`` order (default: the dict's)."""
    parts = []
    for key in (keys if keys is not None else d.keys()):
        v = d[key]
        if isinstance(v, (int, np.integer)) and not isinstance(v, bool):
            parts.append(f"{key} {int(v)}")
        else:
            f = float(v)
            parts.append(f"{key} {f:.1f}" if abs(f) >= 1000 else f"{key} {f:.3f}")
    return " ".join(parts)
