"""The HDBSCAN pipeline of a public speaker-clustering README, as one estimator.

The pipeline finds the number of speakers itself (no ``n_clusters``):

1. **Partial sets.** The N vectors are cut into ``ceil(N / partial_set_size)`` nearly equal sets (the
   README: 11122 utterances, about 20 h, to bound the cost of the cosine-distance matrices). The README
   cuts in input order; here the order is a seeded shuffle by default (``shuffle=True``), because Kaldi
   data directories are sorted by utterance id, which starts with the speaker id, so cutting in order
   would hand each partial set a few whole speakers: information from the labels. ``shuffle=False``
   reproduces the README.
2. **HDBSCAN (EOM)** on each partial set with cosine distances (``metric="cosine"``, a precomputed
   matrix); the points it calls noise are kept aside.
3. **Repeated merging.** Clusters whose mean vectors have cosine similarity ≥ ``merge_similarity``
   (README: 0.94-0.96) are merged, all such pairs of a round at once through connected components, then
   the means are recomputed, until no pair is that similar. This joins one speaker's clusters within a
   partial set and across partial sets.
4. **Splitting.** A cluster with more than ``split_factor`` (README: 3) times the mean cluster size is
   re-clustered with leaf HDBSCAN (finer clusters); when that yields at least two clusters they replace
   it and the points leaf HDBSCAN calls noise join the noise, otherwise it is kept whole. A cluster
   bigger than ``partial_set_size`` is split in chunks of that size (merging rejoins pieces).
5. **Merging again**, as in 3.
6. **Fitting noise.** Each noise point joins the cluster whose mean it is most cosine-similar to when
   that similarity is ≥ ``fit_noise_on_similarity`` (README: 0.80); the means are those of step 5.
7. **Leftover noise** (``noise_policy``): ``"own_cluster"`` makes each point a singleton cluster,
   ``"nearest"`` assigns it to the most similar cluster mean whatever the similarity, ``"drop"`` leaves
   it labelled -1 (the pseudo-label stage drops -1 utterances from training).

``history_`` lists ``(phase, num_clusters, num_noise)`` after each phase; the same lines are logged.
"""

from __future__ import annotations

import logging
import math
import warnings
from collections.abc import Callable
from typing import Any

import numpy as np
import scipy.sparse as sp
from scipy.sparse.csgraph import connected_components
from sklearn.base import BaseEstimator, ClusterMixin

from ._base import as_labels, check_choices, check_input
from .registry import register

log = logging.getLogger(__name__)

_BLOCK = 1 << 23   # elements per similarity block: bounds memory at K ≈ 1e5 clusters


def normalize_rows(M: np.ndarray) -> np.ndarray:
    """Rows scaled to unit L2 norm (zero rows stay zero)."""
    n = np.linalg.norm(M, axis=1, keepdims=True)
    return M / np.maximum(n, 1e-12)


def compact(labels: np.ndarray) -> np.ndarray:
    """Relabel clusters to 0..K-1 in order of their old ids; -1 (noise) stays -1."""
    out = np.full(labels.shape, -1, dtype=np.int64)
    keep = labels >= 0
    if keep.any():
        out[keep] = np.unique(labels[keep], return_inverse=True)[1]
    return out


def cluster_means(X: np.ndarray, labels: np.ndarray, n_clusters: int | None = None
                  ) -> tuple[np.ndarray, np.ndarray]:
    """Mean vector and size of every cluster ``0..K-1`` (noise, -1, ignored)."""
    keep = np.nonzero(labels >= 0)[0]
    k = int(labels.max()) + 1 if n_clusters is None else int(n_clusters)
    k = max(k, 0)
    ind = sp.csr_matrix((np.ones(len(keep)), (labels[keep], keep)), shape=(k, len(labels)))
    counts = np.bincount(labels[keep], minlength=k)
    sums = np.asarray(ind @ X)
    return sums / np.maximum(counts, 1)[:, None], counts


def similar_pairs(U: np.ndarray, threshold: float) -> tuple[np.ndarray, np.ndarray]:
    """All pairs ``i < j`` of unit rows of ``U`` with ``U_i·U_j ≥ threshold``, computed in row blocks."""
    k = U.shape[0]
    rows, cols = [], []
    step = max(1, _BLOCK // max(k, 1))
    for s in range(0, k, step):
        sim = U[s:s + step] @ U.T
        i, j = np.nonzero(sim >= threshold)
        i = i + s
        up = j > i
        rows.append(i[up])
        cols.append(j[up])
    if not rows:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    return np.concatenate(rows), np.concatenate(cols)


def merge_similar(X: np.ndarray, labels: np.ndarray, threshold: float) -> tuple[np.ndarray, int]:
    """Repeated merging (README "Repetitive merging"): merge every group of clusters linked by mean
    cosine similarity ≥ ``threshold`` (connected components of that graph), recompute the means, repeat
    until no pair qualifies. Returns the compacted labels and the number of merging rounds."""
    labels = compact(labels)
    rounds = 0
    while True:
        k = int(labels.max()) + 1
        if k < 2:
            break
        means, _ = cluster_means(X, labels, k)
        i, j = similar_pairs(normalize_rows(means), threshold)
        if len(i) == 0:
            break
        graph = sp.coo_matrix((np.ones(len(i)), (i, j)), shape=(k, k))
        comp = connected_components(graph, directed=False)[1]
        labels = np.where(labels >= 0, comp[np.maximum(labels, 0)], -1)
        rounds += 1
    return labels, rounds


def best_match(V: np.ndarray, U: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For each row of ``V``, the index of the most cosine-similar row of unit matrix ``U`` and that
    similarity (rows of ``V`` are normalised here), in row blocks."""
    Vn = normalize_rows(V)
    idx = np.zeros(len(V), dtype=np.int64)
    best = np.full(len(V), -np.inf)
    step = max(1, _BLOCK // max(U.shape[0], 1))
    for s in range(0, len(V), step):
        sim = Vn[s:s + step] @ U.T
        idx[s:s + step] = np.argmax(sim, axis=1)
        best[s:s + step] = sim[np.arange(sim.shape[0]), idx[s:s + step]]
    return idx, best


def fit_noise(X: np.ndarray, labels: np.ndarray, threshold: float) -> np.ndarray:
    """Assign each noise point (-1) to the cluster whose mean it is most cosine-similar to, when that
    similarity is ≥ ``threshold`` (README "Fitting noise points"); the means are not updated meanwhile."""
    labels = labels.copy()
    noise = np.nonzero(labels < 0)[0]
    if len(noise) == 0 or labels.max() < 0:
        return labels
    means, _ = cluster_means(X, labels)
    idx, best = best_match(X[noise], normalize_rows(means))
    ok = best >= threshold
    labels[noise[ok]] = idx[ok]
    return labels


def split_big(X: np.ndarray, labels: np.ndarray, split_factor: float,
              cluster_fn: Callable[[np.ndarray], np.ndarray], max_set: int) -> tuple[np.ndarray, int]:
    """Re-cluster every cluster with more than ``split_factor`` × the mean cluster size with
    ``cluster_fn`` (points → labels with -1 for noise), in chunks of at most ``max_set`` points. A
    cluster that yields at least two clusters is replaced by them (its noise points become -1); one
    that does not is kept. Returns the compacted labels and the number of clusters split."""
    labels = compact(labels)
    k = int(labels.max()) + 1
    if k == 0:
        return labels, 0
    counts = np.bincount(labels[labels >= 0], minlength=k)
    big = np.nonzero(counts > split_factor * counts.mean())[0]
    out = labels.copy()
    nxt = k
    n_split = 0
    order = np.argsort(labels, kind="stable")
    starts = np.searchsorted(labels[order], np.arange(k + 1))
    for c in big:   # a loop over the few big clusters, not over samples
        idx = order[starts[c]:starts[c + 1]]
        sub = np.full(len(idx), -1, dtype=np.int64)
        off = 0
        for part in np.array_split(np.arange(len(idx)), math.ceil(len(idx) / max_set)):
            lab = cluster_fn(X[idx[part]])
            sub[part] = np.where(lab >= 0, lab + off, -1)
            off += int(lab.max()) + 1 if lab.size and lab.max() >= 0 else 0
        if off < 2:
            continue
        out[idx] = np.where(sub >= 0, sub + nxt, -1)
        nxt += off
        n_split += 1
    return compact(out), n_split


@register("hdbscan")
class HDBSCANPipeline(BaseEstimator, ClusterMixin):
    """HDBSCAN on partial sets, repeated cosine merging, splitting of big clusters with leaf HDBSCAN,
    merging again, fitting of noise points (that README; the module docstring gives every step).

    ``min_cluster_size`` and ``min_samples`` are HDBSCAN's (``min_samples=None`` means
    ``min_cluster_size``; 1 gives the fewest noise points) and apply to the first clustering and to
    the split. ``metric="cosine"`` runs HDBSCAN on a precomputed cosine-distance matrix per partial set
    (O(partial_set_size²) memory: ~1 GB at 11122); ``"euclidean"`` passes the vectors (on L2-normalised
    vectors the same neighbours, different density levels). ``backend``: ``"sklearn"``
    (``sklearn.cluster.HDBSCAN``), ``"hdbscan"`` (the hdbscan package) or ``"auto"`` (hdbscan when
    importable). Deterministic for a given ``random_state`` (which only drives the shuffle).
    """

    def __init__(self, min_cluster_size: int = 5, min_samples: int | None = None,
                 partial_set_size: int = 11122, shuffle: bool = True, cluster_selection_method: str = "eom",
                 metric: str = "cosine", merge_similarity: float = 0.95, split_factor: float = 3.0,
                 split_method: str = "leaf", fit_noise_on_similarity: float = 0.80,
                 noise_policy: str = "own_cluster", backend: str = "sklearn", random_state: int = 0) -> None:
        self.min_cluster_size = min_cluster_size
        self.min_samples = min_samples
        self.partial_set_size = partial_set_size
        self.shuffle = shuffle
        self.cluster_selection_method = cluster_selection_method
        self.metric = metric
        self.merge_similarity = merge_similarity
        self.split_factor = split_factor
        self.split_method = split_method
        self.fit_noise_on_similarity = fit_noise_on_similarity
        self.noise_policy = noise_policy
        self.backend = backend
        self.random_state = random_state

    # -- one HDBSCAN run ------------------------------------------------------------------------------

    def _backend(self) -> str:
        check_choices(self, backend=("sklearn", "hdbscan", "auto"))
        if self.backend == "sklearn":
            return "sklearn"
        try:
            import hdbscan  # noqa: F401
        except ImportError:
            if self.backend == "hdbscan":
                warnings.warn("hdbscan backend asked for but the hdbscan package is not importable; using "
                              "sklearn.cluster.HDBSCAN", RuntimeWarning, stacklevel=3)
            return "sklearn"
        return "hdbscan"

    def hdbscan_labels(self, X: np.ndarray, method: str) -> np.ndarray:
        """HDBSCAN labels (-1 = noise) of the points ``X`` with cluster selection ``method``; all noise
        when there are too few points to form a cluster."""
        ms = self.min_cluster_size if self.min_samples is None else self.min_samples
        n = X.shape[0]
        if n <= max(int(self.min_cluster_size), int(ms)):
            return np.full(n, -1, dtype=np.int64)
        if self.metric == "cosine":
            U = normalize_rows(X.astype(np.float64))
            data = np.clip(1.0 - U @ U.T, 0.0, 2.0)
            np.fill_diagonal(data, 0.0)
            metric = "precomputed"
        else:
            data, metric = X, "euclidean"
        backend = getattr(self, "backend_", None) or self._backend()
        if backend == "hdbscan":
            import hdbscan
            model = hdbscan.HDBSCAN(min_cluster_size=int(self.min_cluster_size), min_samples=int(ms),
                                    metric=metric, cluster_selection_method=method)
        else:
            from sklearn.cluster import HDBSCAN
            model = HDBSCAN(min_cluster_size=int(self.min_cluster_size), min_samples=int(ms), metric=metric,
                            cluster_selection_method=method, copy=False)
        return as_labels(model.fit(data).labels_)

    # -- the pipeline -------------------------------------------------------------------------------------

    def _record(self, phase: str, labels: np.ndarray) -> None:
        k = int(labels.max()) + 1 if labels.size else 0
        noise = int(np.count_nonzero(labels < 0))
        self.history_.append((phase, k, noise))
        log.info("hdbscan pipeline: %-16s %6d clusters, %6d noise points", phase, k, noise)

    def fit(self, X: Any, y: Any = None) -> HDBSCANPipeline:
        """Cluster ``X`` (N, d); ``y`` is ignored."""
        X = check_input(X, min_samples=1)
        check_choices(self, cluster_selection_method=("eom", "leaf"), split_method=("leaf", "eom"),
                      metric=("cosine", "euclidean"), noise_policy=("own_cluster", "nearest", "drop"))
        if int(self.partial_set_size) < 2:
            raise ValueError(f"partial_set_size={self.partial_set_size}: must be at least 2")
        self.backend_ = self._backend()
        self.history_: list[tuple[str, int, int]] = []
        n = X.shape[0]

        # 1-2. HDBSCAN per partial set, labels made unique across sets.
        order = np.random.default_rng(self.random_state).permutation(n) if self.shuffle else np.arange(n)
        sets = np.array_split(order, math.ceil(n / int(self.partial_set_size)))
        self.n_partial_sets_ = len(sets)
        labels = np.full(n, -1, dtype=np.int64)
        off = 0
        for idx in sets:
            lab = self.hdbscan_labels(X[idx], self.cluster_selection_method)
            labels[idx] = np.where(lab >= 0, lab + off, -1)
            off += int(lab.max()) + 1 if lab.max() >= 0 else 0
        self._record("hdbscan", labels)

        # 3. Repeated merging.
        labels, r1 = merge_similar(X, labels, self.merge_similarity)
        self._record("merge", labels)
        # 4. Split big clusters with leaf HDBSCAN.
        labels, self.n_split_ = split_big(X, labels, self.split_factor,
                                          lambda Z: self.hdbscan_labels(Z, self.split_method),
                                          int(self.partial_set_size))
        self._record("split", labels)
        # 5. Merge again.
        labels, r2 = merge_similar(X, labels, self.merge_similarity)
        self.merge_rounds_ = (r1, r2)
        self._record("merge_after_split", labels)
        self.noise_before_fit_ = int(np.count_nonzero(labels < 0))
        # 6. Fit noise points to similar cluster means.
        labels = fit_noise(X, labels, self.fit_noise_on_similarity)
        self._record("fit_noise", labels)
        # 7. What remains of the noise.
        labels = self._leftover(X, labels)
        self._record(f"noise_{self.noise_policy}", labels)

        self.labels_ = compact(labels)
        self.n_clusters_ = int(self.labels_.max()) + 1 if n else 0
        self.n_noise_ = int(np.count_nonzero(self.labels_ < 0))
        return self

    def _leftover(self, X: np.ndarray, labels: np.ndarray) -> np.ndarray:
        noise = np.nonzero(labels < 0)[0]
        if len(noise) == 0 or self.noise_policy == "drop":
            return labels
        labels = labels.copy()
        k = int(labels.max()) + 1
        if self.noise_policy == "nearest" and k > 0:
            means, _ = cluster_means(X, labels, k)
            labels[noise] = best_match(X[noise], normalize_rows(means))[0]
        else:   # own_cluster (or nearest with no cluster at all)
            labels[noise] = k + np.arange(len(noise))
        return labels
