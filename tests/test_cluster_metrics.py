"""Clustering metrics (sslsv.cluster.metrics, docs/algorithms.md §7) against scikit-learn, scipy's dense
Hungarian assignment, an exact big-integer expected mutual information, literal loops and hand-worked
cases; edge cases (one cluster, missing inputs, metric selection)."""

from __future__ import annotations

import math
from collections import Counter
from fractions import Fraction

import numpy as np
import pytest
import sslsv.cluster.metrics as metrics_mod
from scipy.optimize import linear_sum_assignment
from sklearn import metrics as skm
from sslsv.cluster.metrics import (
    METRICS,
    _expected_mutual_info,
    clustering_metrics,
    contingency,
    format_metrics,
    hungarian_accuracy,
)

# ----------------------------------------------------------------------------- references, written slowly


def sklearn_metrics(pred, true, X, sample, seed) -> dict[str, float]:
    """All eleven from scikit-learn / scipy (ACC by dense linear_sum_assignment)."""
    W = skm.cluster.contingency_matrix(true, pred)
    r, c = linear_sum_assignment(W, maximize=True)
    out = {"acc": W[r, c].sum() / len(pred), "ami": skm.adjusted_mutual_info_score(true, pred),
           "nmi": skm.normalized_mutual_info_score(true, pred), "num_clusters": len(set(pred)),
           "completeness": skm.completeness_score(true, pred),
           "homogeneity": skm.homogeneity_score(true, pred),
           "fmi": skm.fowlkes_mallows_score(true, pred), "purity": W.max(axis=0).sum() / len(pred)}
    out["silhouette"] = skm.silhouette_score(X, pred, sample_size=sample, random_state=seed)
    out["chs"] = skm.calinski_harabasz_score(X, pred)
    out["dbs"] = skm.davies_bouldin_score(X, pred)
    return out


def literal_purity(pred, true) -> float:
    best = 0
    for k in set(pred):
        best += max(Counter(t for p, t in zip(pred, true, strict=True) if p == k).values())
    return best / len(pred)


def assert_dbs_matches(got: float, X: np.ndarray, pred, sklearn_value: float) -> None:
    """Ours equals the literal definition to 1e-12 (the same differences, summed in another order) and
    scikit-learn to 1e-6 relative. scikit-learn takes a point's distance to its centroid as
    sqrt(|x|^2 + |c|^2 - 2 x.c); for a singleton cluster that is sqrt(rounding error), about
    sqrt(eps * |x|^2) ~ 1e-7 rather than 0, and which rounding it gets depends on the BLAS kernel and thread
    count. With many singletons the mean moves (4.7188909518 vs 4.7188909511 on the
    "many labels" case, 1.5e-10 relative). 1e-6 stays four orders above that shift for any thread count
    and still catches a wrong formula, which moves the score by more than 1e-3."""
    assert got == pytest.approx(literal_dbs(X, np.asarray(pred)), rel=1e-12)
    assert got == pytest.approx(sklearn_value, rel=1e-6)


def literal_dbs(X: np.ndarray, pred: np.ndarray) -> float:
    """Davies-Bouldin with every distance taken as the norm of a difference (no Gram-matrix shortcut)."""
    ks = sorted(set(pred.tolist()))
    cen = [X[pred == k].mean(axis=0) for k in ks]
    s = [np.linalg.norm(X[pred == k] - c, axis=1).mean() for k, c in zip(ks, cen, strict=True)]
    worst = []
    for i in range(len(ks)):
        worst.append(max((s[i] + s[j]) / np.linalg.norm(cen[i] - cen[j]) for j in range(len(ks)) if j != i))
    return float(np.mean(worst))


def exact_emi(a: list[int], b: list[int], n: int) -> float:
    """E[MI] over every class x cluster pair and every n_ij, the hypergeometric probability as an exact
    big-integer fraction rounded once (no lgamma, no truncation)."""
    total = 0.0
    for ai in a:
        for bj in b:
            den = math.comb(n, bj)
            for nij in range(max(1, ai + bj - n), min(ai, bj) + 1):
                p = float(Fraction(math.comb(ai, nij) * math.comb(n - ai, bj - nij), den))
                total += nij / n * math.log(n * nij / (ai * bj)) * p
    return total


def blobs(rng: np.random.Generator, true: np.ndarray, dim: int, spread: float = 1.0) -> np.ndarray:
    """float64 points around a random centre per class."""
    codes = np.unique(true, return_inverse=True)[1]
    centres = rng.normal(size=(codes.max() + 1, dim)) * 3
    return centres[codes] + spread * rng.normal(size=(len(true), dim))


def labeling(rng, n, n_classes, n_clusters, noise):
    """True classes and a clustering that follows them (cluster = class mod K) except for ``noise``."""
    true = rng.integers(0, n_classes, n)
    pred = np.where(rng.random(n) < noise, rng.integers(0, n_clusters, n), true % n_clusters)
    return true, pred


# ----------------------------------------------------------------------------- against scikit-learn

CASES = {  # name: (N, classes, clusters, noise)
    "K>C": (600, 7, 11, 0.3),
    "K<C": (3000, 40, 25, 0.5),
    "K=C random": (800, 12, 12, 1.0),
    "many labels": (2500, 300, 450, 0.4),
}


@pytest.mark.parametrize("case", CASES)
def test_all_metrics_equal_sklearn(case):
    n, c, k, noise = CASES[case]
    rng = np.random.default_rng(len(case))
    true, pred = labeling(rng, n, c, k, noise)
    X = blobs(rng, true, 6)
    got = clustering_metrics(pred, true, X, silhouette_sample=n // 2, random_state=7)
    ref = sklearn_metrics(pred, true, X, n // 2, 7)
    assert list(got) == list(METRICS)
    assert got["num_clusters"] == ref["num_clusters"] and isinstance(got["num_clusters"], int)
    for m in METRICS:
        if m != "dbs":
            assert got[m] == pytest.approx(ref[m], rel=1e-10, abs=1e-10), m
    assert_dbs_matches(got["dbs"], X, pred, ref["dbs"])
    # the values are not degenerate: the comparison can fail
    assert 0.01 < got["nmi"] < 0.999 and 0.01 < abs(got["silhouette"]) < 1 and got["dbs"] > 0.1


def test_blocked_passes_equal_sklearn(monkeypatch):
    """Tiny row chunks and distance blocks, so that every cross-block path (cluster sums split over
    chunks, the upper-triangle DBS blocks' row and column maxima, silhouette row blocks) is taken."""
    monkeypatch.setattr(metrics_mod, "_ROWS", 13)
    monkeypatch.setattr(metrics_mod, "_BLOCK", 5)
    rng = np.random.default_rng(9)
    true, pred = labeling(rng, 900, 15, 23, 0.3)
    X = blobs(rng, true, 6, spread=2.0)
    got = clustering_metrics(pred, None, X, silhouette_sample=500, random_state=2)
    assert got["silhouette"] == pytest.approx(skm.silhouette_score(X, pred, sample_size=500, random_state=2),
                                              rel=1e-10)
    assert got["chs"] == pytest.approx(skm.calinski_harabasz_score(X, pred), rel=1e-10)
    assert_dbs_matches(got["dbs"], X, pred, skm.davies_bouldin_score(X, pred))


def test_string_labels_and_singletons():
    """Speaker-id strings, cluster names, many singleton clusters (silhouette's 0 for a singleton)."""
    rng = np.random.default_rng(3)
    true, pred = labeling(rng, 400, 30, 260, 0.6)
    true_s = np.array([f"id{t:05d}" for t in true])
    pred_s = [f"c{p}" for p in pred]
    X = blobs(rng, true, 5)
    got = clustering_metrics(pred_s, true_s, X, silhouette_sample=300, random_state=1)
    ref = sklearn_metrics(pred_s, true_s, X, 300, 1)
    sizes = Counter(pred_s)
    assert sum(v == 1 for v in sizes.values()) >= 20
    for m in METRICS:
        if m != "dbs":
            assert got[m] == pytest.approx(ref[m], rel=1e-10, abs=1e-10), m
    assert_dbs_matches(got["dbs"], X, pred_s, ref["dbs"])


def test_silhouette_without_sampling_and_float32():
    rng = np.random.default_rng(5)
    true, pred = labeling(rng, 700, 6, 9, 0.2)
    X = blobs(rng, true, 8)
    got = clustering_metrics(pred, None, X, silhouette_sample=None)
    assert got["silhouette"] == pytest.approx(skm.silhouette_score(X, pred), rel=1e-10)
    # a sample at least as large as N is all points in a permuted order: same mean
    assert clustering_metrics(pred, None, X, silhouette_sample=5000, names=["silhouette"])["silhouette"] \
        == pytest.approx(got["silhouette"], rel=1e-12)
    # float32 input is computed in float64 from the float32 values
    X32 = X.astype(np.float32)
    got32 = clustering_metrics(pred, None, X32, silhouette_sample=None)
    ref64 = clustering_metrics(pred, None, X32.astype(np.float64), silhouette_sample=None)
    for m in ("silhouette", "chs", "dbs"):
        assert got32[m] == pytest.approx(ref64[m], rel=1e-12), m
    assert got32["silhouette"] > 0.1          # separated blobs


# ----------------------------------------------------------------------------- AMI / expected MI


@pytest.mark.parametrize("n,c,k,noise", [(20000, 800, 1200, 0.5), (6000, 1500, 2500, 0.3),
                                         (200000, 3, 4, 0.7), (50000, 2, 2, 0.9)])
def test_ami_equals_sklearn_many_labels_and_long_sums(n, c, k, noise):
    """Many labels (sklearn's slow case) and few huge labels (hypergeometric sums over ~10^4 values)."""
    rng = np.random.default_rng(n)
    true, pred = labeling(rng, n, c, k, noise)
    got = clustering_metrics(pred, true, names=["ami"])
    assert list(got) == ["ami"]
    assert got["ami"] == pytest.approx(skm.adjusted_mutual_info_score(true, pred), abs=1e-10)
    assert got["ami"] > 0.005


def test_expected_mutual_info_exact():
    """Grouped, truncated EMI = the literal triple sum with exact hypergeometric probabilities."""
    rng = np.random.default_rng(11)
    for n, c, k in [(300, 12, 20), (60, 3, 50), (1000, 2, 3)]:
        true, pred = labeling(rng, n, c, k, 0.5)
        a = np.bincount(np.unique(true, return_inverse=True)[1])
        b = np.bincount(np.unique(pred, return_inverse=True)[1])
        ref = exact_emi(a.tolist(), b.tolist(), n)
        assert _expected_mutual_info(a, b, n) == pytest.approx(ref, rel=1e-11, abs=0)
        assert ref > 1e-3


# ----------------------------------------------------------------------------- ACC, purity, contingency


def test_acc_hand_case():
    """3 speakers A, B, C; 4 clusters. Counts (cluster: A B C): 0: 5 4 0, 1: 4 0 0, 2: 0 0 3, 3: 0 0 2.
    Greedy would give 0->A (5) and then nothing for cluster 1: 5 + 3 = 8. The best one-to-one map is
    0->B (4), 1->A (4), 2->C (3) = 11; cluster 3 has no class left, so its 2 samples are errors:
    ACC = 11/18. Purity takes each cluster's majority: (5 + 4 + 3 + 2)/18 = 14/18."""
    cells = {(0, "A"): 5, (0, "B"): 4, (1, "A"): 4, (2, "C"): 3, (3, "C"): 2}
    pred = [k for (k, _), v in cells.items() for _ in range(v)]
    true = [t for (_, t), v in cells.items() for _ in range(v)]
    assert hungarian_accuracy(true, pred) == pytest.approx(11 / 18, abs=0)
    got = clustering_metrics(pred, true, names=["acc", "purity", "num_clusters"])
    assert got == {"acc": 11 / 18, "num_clusters": 4, "purity": 14 / 18}


@pytest.mark.parametrize("n,c,k,noise", [(5000, 300, 500, 0.5), (4000, 400, 150, 0.3), (3000, 50, 50, 1.0)])
def test_acc_equals_dense_assignment_and_purity_literal(n, c, k, noise):
    rng = np.random.default_rng(k)
    true, pred = labeling(rng, n, c, k, noise)
    W = skm.cluster.contingency_matrix(true, pred)
    r, col = linear_sum_assignment(W, maximize=True)
    got = clustering_metrics(pred, true, names=["acc", "purity"])
    assert got["acc"] * n == pytest.approx(W[r, col].sum(), abs=1e-9)
    assert got["purity"] == pytest.approx(literal_purity(pred.tolist(), true.tolist()), abs=1e-15)
    assert 0.05 < got["acc"] <= got["purity"]    # one-to-one never beats many-to-one


def test_contingency_layout():
    rng = np.random.default_rng(2)
    true = rng.choice(["s1", "s2", "s3", "x"], 200)
    pred = rng.integers(-3, 9, 200)
    W = contingency(true, pred)
    assert W.dtype == np.int64 and W.shape == (4, 12)
    np.testing.assert_array_equal(W.toarray(), skm.cluster.contingency_matrix(true, pred))


# ----------------------------------------------------------------------------- edge cases, API


def test_one_predicted_cluster():
    rng = np.random.default_rng(4)
    true = rng.integers(0, 5, 200)
    X = rng.normal(size=(200, 3))
    got = clustering_metrics(np.zeros(200, int), true, X)
    assert list(got) == list(METRICS) and got["num_clusters"] == 1
    assert all(math.isnan(got[m]) for m in ("silhouette", "chs", "dbs"))
    assert got["ami"] == 0.0 and got["nmi"] == 0.0 and got["homogeneity"] == 0.0
    assert got["completeness"] == 1.0
    assert got["acc"] == got["purity"] == np.bincount(true).max() / 200
    assert got["fmi"] == pytest.approx(skm.fowlkes_mallows_score(true, np.zeros(200, int)), abs=1e-15)
    # one class and one cluster: a perfect match by sklearn's convention
    one = clustering_metrics(["a"] * 5, ["s"] * 5, names=["ami", "nmi", "acc"])
    assert one == {"acc": 1.0, "ami": 1.0, "nmi": 1.0}


def test_every_point_its_own_cluster():
    """K = N: the geometric scores are undefined (NaN), the supervised ones are sklearn's."""
    rng = np.random.default_rng(6)
    true = rng.integers(0, 4, 50)
    got = clustering_metrics(np.arange(50), true, rng.normal(size=(50, 2)))
    assert all(math.isnan(got[m]) for m in ("silhouette", "chs", "dbs"))
    assert got["purity"] == 1.0 and got["homogeneity"] == pytest.approx(1.0, abs=1e-12)
    assert got["ami"] == pytest.approx(skm.adjusted_mutual_info_score(true, np.arange(50)), abs=1e-12)


def test_missing_inputs_and_names():
    rng = np.random.default_rng(8)
    true, pred = labeling(rng, 300, 5, 6, 0.3)
    X = blobs(rng, true, 4)
    assert list(clustering_metrics(pred)) == ["num_clusters"]
    no_x = [m for m in METRICS if m not in ("silhouette", "chs", "dbs")]
    assert list(clustering_metrics(pred, true)) == no_x
    assert list(clustering_metrics(pred, X=X)) == ["num_clusters", "silhouette", "chs", "dbs"]
    sel = clustering_metrics(pred, true, X, names=["nmi", "num_clusters", "acc", "ami"])
    assert list(sel) == ["acc", "ami", "nmi", "num_clusters"]
    full = clustering_metrics(pred, true, X)
    assert all(sel[m] == full[m] for m in sel)
    with pytest.raises(ValueError, match="unknown metric"):
        clustering_metrics(pred, true, names=["accuracy"])
    with pytest.raises(ValueError, match="need labels_true"):
        clustering_metrics(pred, names=["acc"])
    with pytest.raises(ValueError, match="need X"):
        clustering_metrics(pred, true, names=["chs"])
    with pytest.raises(ValueError, match="labels_true has 299"):
        clustering_metrics(pred, true[:-1])
    with pytest.raises(ValueError, match="X must be"):
        clustering_metrics(pred, X=X[:-1])
    bad = X.copy()
    bad[3, 1] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        clustering_metrics(pred, X=bad, names=["chs"])


def test_format_metrics():
    d = {"acc": 0.62149, "nmi": 0.8436, "num_clusters": 9871, "silhouette": float("nan"), "chs": 53123.44,
         "dbs": 1.2}
    assert format_metrics(d) == "acc 0.621 nmi 0.844 num_clusters 9871 silhouette nan chs 53123.4 dbs 1.200"
    assert format_metrics(d, ["num_clusters", "acc"]) == "num_clusters 9871 acc 0.621"
