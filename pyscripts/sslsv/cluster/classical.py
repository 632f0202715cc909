"""Classical (non-deep) clustering baselines as registered scikit-learn estimators.

docs/algorithms.md §4 lists the baselines of the authors' tables (GMM and AHC with K = 5000) and the ones the
project adds (k-means, mini-batch k-means, BIRCH, spectral). Each class here wraps the scikit-learn (or
faiss) implementation behind the common interface of :mod:`.registry`: keyword-only parameters with
defaults, ``fit(X)`` sets ``labels_`` (int64 in ``0..n_clusters-1``), every seeded method takes
``random_state``. The wrappers add what the library calls do not do by themselves at the recipe's scale:
a sparse k-NN connectivity graph for agglomerative clustering (N ≈ 1.09M makes the dense O(N²) version
infeasible), a bounded global step for BIRCH and the faiss backend for k-means.
"""

from __future__ import annotations

import logging
import warnings
from typing import Any

import numpy as np
import scipy.sparse as sp
from scipy.sparse.csgraph import connected_components
from sklearn.base import BaseEstimator, ClusterMixin
from sklearn.cluster import AgglomerativeClustering, Birch, KMeans, MiniBatchKMeans, SpectralClustering
from sklearn.mixture import GaussianMixture
from sklearn.neighbors import NearestNeighbors

from ._base import as_labels, check_choices, check_input
from .registry import register

log = logging.getLogger(__name__)


def knn_connectivity(X: np.ndarray, n_neighbors: int, metric: str = "euclidean") -> sp.csr_matrix:
    """Symmetric 0/1 k-NN graph (i~j when either is among the other's ``n_neighbors`` nearest), the
    sparse ``connectivity`` that keeps agglomerative clustering at O(N·k) memory instead of O(N²)."""
    k = max(1, min(int(n_neighbors), X.shape[0] - 1))
    # Exhaustive search above 15 dimensions (i-vectors: 100-400), where trees no longer prune.
    nn = NearestNeighbors(n_neighbors=k, metric=metric, algorithm="brute" if X.shape[1] > 15 else "auto")
    g = nn.fit(X).kneighbors_graph(mode="connectivity")   # the query set is the fit set: no self-edges
    return ((g + g.T) > 0).astype(np.float64).tocsr()


def link_components(X: np.ndarray, graph: sp.spmatrix, metric: str = "euclidean"
                    ) -> tuple[sp.csr_matrix, int]:
    """Make ``graph`` connected by adding one edge per component and round (Borůvka on centroids).

    scikit-learn would join the components itself, but by computing all distances between every pair
    of components (O(N²): minutes at 60k points, hours at 1M). Here each round links every component to
    the component with the nearest centroid, through the member of each side nearest to the other (the
    point of A nearest to B's centroid, then the point of B nearest to that point); the number of
    components at least halves per round. Returns the connected graph and the original component count.
    """
    graph = sp.csr_matrix(graph)
    n_comp, comp = connected_components(graph, directed=False)
    n_orig = int(n_comp)
    rows: list[int] = []
    cols: list[int] = []
    while n_comp > 1:
        counts = np.bincount(comp, minlength=n_comp).astype(np.float64)
        ind = sp.csr_matrix((np.ones(len(comp)), (comp, np.arange(len(comp)))), shape=(n_comp, len(comp)))
        cent = np.asarray(ind @ X) / counts[:, None]
        nn = NearestNeighbors(n_neighbors=2, metric=metric).fit(cent).kneighbors(cent, return_distance=False)
        partner = np.where(nn[:, 0] == np.arange(n_comp), nn[:, 1], nn[:, 0])
        d = pairwise_distances_rowwise(X, cent[partner[comp]], metric)
        order = np.lexsort((d, comp))
        first = order[np.searchsorted(comp[order], np.arange(n_comp))]   # per component, nearest to partner
        by_comp = np.split(np.argsort(comp, kind="stable"), np.cumsum(np.bincount(comp))[:-1])
        for a in range(n_comp):   # one edge per component (not per sample)
            mb = by_comp[partner[a]]
            q = mb[np.argmin(pairwise_distances_rowwise(X[mb], X[first[a]][None, :], metric))]
            rows.append(int(first[a]))
            cols.append(int(q))
        extra = sp.csr_matrix((np.ones(len(rows)), (rows, cols)), shape=graph.shape)
        n_comp, comp = connected_components(graph + extra + extra.T, directed=False)
    if rows:
        extra = sp.csr_matrix((np.ones(len(rows)), (rows, cols)), shape=graph.shape)
        graph = ((graph + extra + extra.T) > 0).astype(np.float64).tocsr()
    return graph, n_orig


def pairwise_distances_rowwise(A: np.ndarray, B: np.ndarray, metric: str = "euclidean") -> np.ndarray:
    """Distance between row i of ``A`` and row i of ``B`` (``B`` may be one row, broadcast):
    squared Euclidean for ``"euclidean"`` (same order), 1 − cos for ``"cosine"``."""
    if metric == "cosine":
        na = np.linalg.norm(A, axis=1)
        nb = np.linalg.norm(B, axis=1)
        return 1.0 - np.einsum("ij,ij->i", A, np.broadcast_to(B, A.shape)) / np.maximum(na * nb, 1e-12)
    diff = A - B
    return np.einsum("ij,ij->i", diff, diff)


def _faiss_available() -> bool:
    try:
        import faiss  # noqa: F401
    except ImportError:
        return False
    return True


def _take_kmeans_fit(est: BaseEstimator, km: Any) -> None:
    """Copy a fitted scikit-learn (mini-batch) k-means model's results onto ``est``; the wrappers'
    parameters carry scikit-learn's names, so they reach it as ``**get_params()``."""
    est.labels_ = as_labels(km.labels_)
    est.cluster_centers_ = km.cluster_centers_
    est.inertia_ = float(km.inertia_)
    est.n_iter_ = int(km.n_iter_)


@register("kmeans")
class KMeansClustering(BaseEstimator, ClusterMixin):
    """k-means (Lloyd iterations, best of ``n_init`` runs).

    ``backend``: ``"sklearn"`` (``sklearn.cluster.KMeans``, k-means++ seeding), ``"faiss"`` (``faiss.Kmeans``
    as in Loss-Gated Learning, docs/algorithms.md §8: random-point seeding, GPU when faiss sees one and
    ``device`` allows it) or ``"auto"`` (faiss when importable, else scikit-learn). faiss is optional:
    when it cannot be imported the scikit-learn backend runs (a warning when ``"faiss"`` was asked for).
    ``backend_`` records which one ran. The two backends do not give identical labels, and faiss's
    random seeding needs more restarts: on 8 well-separated blobs faiss reached ACC 1.0 for 2 of 6 seeds
    with ``n_init=1``, 4 of 6 with 5 and 6 of 6 with 20, scikit-learn 6 of 6 with 1.
    """

    def __init__(self, n_clusters: int = 100, n_init: int = 1, max_iter: int = 300, tol: float = 1e-4,
                 backend: str = "sklearn", device: str = "auto", random_state: int = 0) -> None:
        self.n_clusters = n_clusters
        self.n_init = n_init
        self.max_iter = max_iter
        self.tol = tol
        self.backend = backend
        self.device = device
        self.random_state = random_state

    def _backend(self) -> str:
        check_choices(self, backend=("sklearn", "faiss", "auto"))
        if self.backend == "sklearn":
            return "sklearn"
        if _faiss_available():
            return "faiss"
        if self.backend == "faiss":
            warnings.warn("kmeans backend 'faiss' asked for but faiss is not importable; "
                          "using scikit-learn KMeans", RuntimeWarning, stacklevel=3)
        return "sklearn"

    def fit(self, X: Any, y: Any = None) -> KMeansClustering:
        """Cluster ``X`` (N, d); ``y`` is ignored."""
        X = check_input(X, min_samples=2)
        self.backend_ = self._backend()
        if self.backend_ == "faiss":
            self._fit_faiss(X)
        else:
            params = {k: v for k, v in self.get_params().items() if k not in ("backend", "device")}
            _take_kmeans_fit(self, KMeans(**params).fit(X))
        return self

    def _fit_faiss(self, X: np.ndarray) -> None:
        import faiss

        dev = str(self.device)
        if dev not in ("auto", "cpu") and not dev.startswith("cuda"):
            raise ValueError(f"device={dev!r}: expected auto, cpu or cuda")
        x = np.ascontiguousarray(X, dtype=np.float32)
        n, d = x.shape
        ngpu = faiss.get_num_gpus() if hasattr(faiss, "get_num_gpus") else 0
        use_gpu = dev != "cpu" and ngpu > 0   # faiss.Kmeans(gpu=True) uses every visible GPU
        if dev.startswith("cuda") and ngpu == 0:
            raise RuntimeError(f"kmeans device {dev!r}: this faiss build sees no GPU")
        # max_points_per_centroid: faiss otherwise trains on a random subset of 256·K points; here all
        # points are used, as scikit-learn does. faiss has no convergence tolerance: it runs niter
        # iterations per run and keeps the run with the lowest objective.
        km = faiss.Kmeans(d, int(self.n_clusters), niter=int(self.max_iter), nredo=int(self.n_init),
                          seed=int(self.random_state), gpu=bool(use_gpu), verbose=False,
                          max_points_per_centroid=max(256, -(-n // int(self.n_clusters))))
        km.train(x)
        dist, idx = km.index.search(x, 1)
        self.labels_ = as_labels(idx[:, 0])
        self.cluster_centers_ = np.asarray(km.centroids, dtype=np.float32).reshape(int(self.n_clusters), d)
        self.inertia_ = float(np.sum(dist[:, 0], dtype=np.float64))
        self.n_iter_ = int(self.max_iter)


@register("minibatch_kmeans")
class MiniBatchKMeansClustering(BaseEstimator, ClusterMixin):
    """Mini-batch k-means (``sklearn.cluster.MiniBatchKMeans``): k-means++ on an init subset, then centre
    updates from random batches of ``batch_size`` points; stops after ``max_iter`` passes or when the
    smoothed inertia has not improved for ``max_no_improvement`` batches. Linear in N, so it runs at
    N ≈ 1M on a CPU. Keep ``batch_size`` well above ``n_clusters`` so each batch touches most centres."""

    def __init__(self, n_clusters: int = 100, batch_size: int = 4096, max_iter: int = 100, n_init: int = 3,
                 max_no_improvement: int = 10, reassignment_ratio: float = 0.01,
                 random_state: int = 0) -> None:
        self.n_clusters = n_clusters
        self.batch_size = batch_size
        self.max_iter = max_iter
        self.n_init = n_init
        self.max_no_improvement = max_no_improvement
        self.reassignment_ratio = reassignment_ratio
        self.random_state = random_state

    def fit(self, X: Any, y: Any = None) -> MiniBatchKMeansClustering:
        """Cluster ``X`` (N, d); ``y`` is ignored."""
        X = check_input(X, min_samples=2)
        _take_kmeans_fit(self, MiniBatchKMeans(**self.get_params()).fit(X))
        return self


@register("gmm")
class GMMClustering(BaseEstimator, ClusterMixin):
    """Gaussian mixture model fitted by EM (``sklearn.mixture.GaussianMixture``); each point's label is
    its most probable component. The authors' GMM baseline (K = 5000, ACC 45.0 %) does not state the
    covariance type; diagonal covariances (the default here) are what is tractable at that K.
    ``reg_covar`` is added to every variance; on L2-normalised 400-d vectors the per-dimension variance is
    about 1/400, so the default 1e-6 is a floor, not a smoothing. A component that ends up with no point
    leaves its label unused (``labels_`` stays within ``0..n_clusters-1``)."""

    def __init__(self, n_clusters: int = 100, covariance_type: str = "diag", n_init: int = 1,
                 max_iter: int = 100, tol: float = 1e-3, reg_covar: float = 1e-6, init_params: str = "kmeans",
                 random_state: int = 0) -> None:
        self.n_clusters = n_clusters
        self.covariance_type = covariance_type
        self.n_init = n_init
        self.max_iter = max_iter
        self.tol = tol
        self.reg_covar = reg_covar
        self.init_params = init_params
        self.random_state = random_state

    def fit(self, X: Any, y: Any = None) -> GMMClustering:
        """Fit the mixture to ``X`` (N, d) and label each point; ``y`` is ignored."""
        X = check_input(X, min_samples=2)
        params = self.get_params()
        gm = GaussianMixture(n_components=params.pop("n_clusters"), **params)
        # fit_predict labels with the final parameters (one E-step after the last M-step).
        self.labels_ = as_labels(gm.fit_predict(X))
        self.means_ = gm.means_
        self.weights_ = gm.weights_
        self.converged_ = bool(gm.converged_)
        self.lower_bound_ = float(gm.lower_bound_)
        self.n_iter_ = int(gm.n_iter_)
        if not self.converged_:
            log.warning("gmm: EM did not converge in %d iterations", self.max_iter)
        return self


@register("birch")
class BirchClustering(BaseEstimator, ClusterMixin):
    """BIRCH: one pass builds a CF-tree whose leaf subclusters have radius ≤ ``threshold``, then a global
    step groups the subcluster centres into ``n_clusters`` with Ward agglomerative clustering, and each
    point takes the label of its nearest subcluster.

    ``threshold`` is a Euclidean radius. On L2-normalised vectors distances lie in [0, 2] and
    ‖a−b‖² = 2 − 2·cos(a, b), so 0.3 keeps subclusters within about cos 0.955 of their centre: tight
    enough not to mix speakers. On high-dimensional i-vectors, where same-speaker vectors are often
    further apart than that, nearly every point becomes its own subcluster and the tree and global step
    grow to N entries; raise ``threshold`` (0.6-0.9) there and check ``n_subclusters_``.

    ``global_connectivity``: ``"none"`` runs scikit-learn's dense Ward on the centres (O(S²) memory for S
    subclusters), ``"knn"`` restricts merges to a ``n_neighbors`` k-NN graph of the centres (O(S·k)),
    ``"auto"`` picks ``"knn"`` above 20000 subclusters. With fewer subclusters than ``n_clusters`` every
    subcluster is its own cluster (a warning says so)."""

    DENSE_LIMIT = 20000

    def __init__(self, n_clusters: int = 100, threshold: float = 0.3, branching_factor: int = 50,
                 global_connectivity: str = "auto", n_neighbors: int = 10) -> None:
        self.n_clusters = n_clusters
        self.threshold = threshold
        self.branching_factor = branching_factor
        self.global_connectivity = global_connectivity
        self.n_neighbors = n_neighbors

    def fit(self, X: Any, y: Any = None) -> BirchClustering:
        """Cluster ``X`` (N, d); ``y`` is ignored. Deterministic for a given row order."""
        X = check_input(X, min_samples=2)
        check_choices(self, global_connectivity=("auto", "knn", "none"))
        tree = Birch(threshold=self.threshold, branching_factor=self.branching_factor, n_clusters=None,
                     compute_labels=True).fit(X)
        centres = tree.subcluster_centers_
        s = centres.shape[0]
        self.n_subclusters_ = int(s)
        if s <= self.n_clusters:
            if s < self.n_clusters:
                warnings.warn(f"birch: only {s} subclusters for n_clusters={self.n_clusters}; each "
                              "subcluster is a cluster (lower threshold to get more)", RuntimeWarning,
                              stacklevel=2)
            sub_labels = np.arange(s)
        else:
            conn = self.global_connectivity
            if conn == "auto":
                conn = "knn" if s > self.DENSE_LIMIT else "none"
            graph = link_components(centres, knn_connectivity(centres, self.n_neighbors))[0] \
                if conn == "knn" else None
            sub_labels = AgglomerativeClustering(n_clusters=self.n_clusters, linkage="ward",
                                                 connectivity=graph).fit_predict(centres)
        self.subcluster_centers_ = centres
        self.subcluster_labels_ = as_labels(sub_labels)
        self.labels_ = self.subcluster_labels_[tree.labels_]
        return self


@register("agglomerative")
class AgglomerativeClusteringKNN(BaseEstimator, ClusterMixin):
    """Agglomerative (bottom-up hierarchical) clustering, cut at ``n_clusters``.

    ``connectivity="knn"`` only merges clusters joined by an edge of the symmetrised ``n_neighbors``-NN
    graph (``sklearn.neighbors.kneighbors_graph``), which keeps memory at O(N·k) and makes N in the
    hundreds of thousands feasible; ``"none"`` is plain scikit-learn AgglomerativeClustering (O(N²)
    memory, small N only). A k-NN graph of well-separated data has several connected components;
    scikit-learn would join them itself by computing every distance between every pair of components
    (O(N²) time: about 2 minutes at 60k points), so :func:`link_components` joins them first with a few
    cheap edges. Measured at 60k points (40-d, 2 cores): k-NN graph 8 s, Ward 15-35 s (scikit-learn's
    merge loop is Python-level); the brute-force k-NN graph grows as N²·d. ``n_components_`` records
    how many components the k-NN graph had. ``metric`` is the linkage and k-NN distance:
    ``"euclidean"`` (Ward needs it) or ``"cosine"``.

    Average linkage leaves far-out points as late singleton clusters, and more so with a k-NN graph: on
    1600 points in 8 Gaussian blobs in 20-d with a noisy spread (std 3 around centres at distance ~25,
    L2-normalised) it returns three blobs merged into one cluster and two singletons (ACC 0.75) where Ward
    is exact (dense average linkage: ACC 1.0). Prefer Ward unless measured otherwise.
    """

    def __init__(self, n_clusters: int = 100, linkage: str = "ward", metric: str = "euclidean",
                 connectivity: str = "knn", n_neighbors: int = 10) -> None:
        self.n_clusters = n_clusters
        self.linkage = linkage
        self.metric = metric
        self.connectivity = connectivity
        self.n_neighbors = n_neighbors

    def fit(self, X: Any, y: Any = None) -> AgglomerativeClusteringKNN:
        """Cluster ``X`` (N, d); ``y`` is ignored. Deterministic."""
        X = check_input(X, min_samples=2)
        check_choices(self, connectivity=("knn", "none"), linkage=("ward", "average", "complete", "single"),
                      metric=("euclidean", "cosine"))
        graph = None
        self.n_components_ = 1
        if self.connectivity == "knn":
            graph, self.n_components_ = link_components(X, knn_connectivity(X, self.n_neighbors, self.metric),
                                                        self.metric)
            if self.n_components_ > 1:
                log.info("agglomerative: the k-NN graph (k=%d) had %d connected components; joined before "
                         "clustering", self.n_neighbors, self.n_components_)
        model = AgglomerativeClustering(n_clusters=self.n_clusters, linkage=self.linkage, metric=self.metric,
                                        connectivity=graph)
        self.labels_ = as_labels(model.fit_predict(X))
        return self


@register("spectral")
class SpectralClusteringKNN(BaseEstimator, ClusterMixin):
    """Spectral clustering on a k-NN affinity graph (``affinity="nearest_neighbors"``, sparse, so the
    affinity is O(N·k) rather than the dense O(N²) RBF kernel): the ``n_clusters`` leading eigenvectors of
    the normalised graph Laplacian, then ``assign_labels`` — ``"cluster_qr"`` (deterministic, no
    iterations) or ``"kmeans"`` (``n_init`` restarts). ``eigen_solver`` None means ARPACK; ``"lobpcg"``
    and ``"amg"`` (needs pyamg) scale further. A k-NN graph with several components (well-separated
    groups) is what spectral clustering separates best; scikit-learn warns that it is not fully
    connected, which is silenced here."""

    def __init__(self, n_clusters: int = 100, n_neighbors: int = 10, assign_labels: str = "cluster_qr",
                 eigen_solver: str | None = None, n_init: int = 10, random_state: int = 0) -> None:
        self.n_clusters = n_clusters
        self.n_neighbors = n_neighbors
        self.assign_labels = assign_labels
        self.eigen_solver = eigen_solver
        self.n_init = n_init
        self.random_state = random_state

    def fit(self, X: Any, y: Any = None) -> SpectralClusteringKNN:
        """Cluster ``X`` (N, d); ``y`` is ignored."""
        X = check_input(X, min_samples=2)
        check_choices(self, assign_labels=("cluster_qr", "kmeans", "discretize"))
        model = SpectralClustering(n_clusters=self.n_clusters, affinity="nearest_neighbors",
                                   n_neighbors=min(int(self.n_neighbors), X.shape[0] - 1),
                                   assign_labels=self.assign_labels, eigen_solver=self.eigen_solver,
                                   n_init=self.n_init, random_state=self.random_state)
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*not fully connected.*", category=UserWarning)
            self.labels_ = as_labels(model.fit_predict(X))
        return self
