"""The deep information-maximisation estimator (IMSAT / CIMC / CAMSAT family): accuracy on separable
data, CAMSAT's cluster-count reduction, independence from the evaluation labels, batch-norm handling,
checkpoint resume (in process and after a real SIGKILL)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from scipy.optimize import linear_sum_assignment
from sklearn.metrics import completeness_score, fowlkes_mallows_score, homogeneity_score
from sslsv.cluster import build, method_config, methods
from sslsv.cluster.deep.estimator import DeepIMClustering
from sslsv.cluster.deep.model import ClusterMLP, frozen_bn_stats


def blobs(n_per: int = 150, k: int = 8, d: int = 24, spread: float = 0.12, seed: int = 0,
          sizes: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Unit-norm "i-vectors": k random directions plus isotropic noise, re-normalised."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((k, d))
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    counts = np.full(k, n_per) if sizes is None else sizes
    y = np.repeat(np.arange(k), counts)
    x = centres[y] + spread * rng.standard_normal((len(y), d))
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    return x.astype(np.float32), y


def acc(y: np.ndarray, c: np.ndarray) -> float:
    w = np.zeros((c.max() + 1, y.max() + 1))
    np.add.at(w, (c, y), 1)
    r, k = linear_sum_assignment(w, maximize=True)
    return w[r, k].sum() / len(y)


SMALL = dict(hidden="128-128", batch_size=400, epochs=40, optimizer="adam", lr=0.002, lr_decay=1.0,
             device="cpu", verbose=False)


def test_imsat_separates_blobs() -> None:
    x, y = blobs()
    est = DeepIMClustering(n_clusters=8, **SMALL).fit(x)
    assert acc(y, est.labels_) > 0.95
    p = est.predict_proba(x)
    assert p.shape == (len(x), 8) and np.allclose(p.sum(1), 1, atol=1e-5)
    assert np.array_equal(est.predict(x), p.argmax(1)) and np.array_equal(est.labels_, est.predict(x))
    assert len(est.curve_) == 40 and est.curve_[-1]["num_clusters"] == 8


def test_evaluation_labels_do_not_change_training() -> None:
    x, y = blobs(n_per=60, k=5)
    params = dict(SMALL, epochs=6, supcon_weight=1.0, mixup_weight=1.0)
    a = DeepIMClustering(n_clusters=5, **params).fit(x)
    b = DeepIMClustering(n_clusters=5, **params).fit(x, eval_labels=y)
    assert np.array_equal(a.labels_, b.labels_)
    assert np.allclose(a.predict_proba(x), b.predict_proba(x))
    assert "acc" in b.curve_[-1] and "acc" not in a.curve_[-1]
    assert b.curve_[-1]["acc"] == pytest.approx(acc(y, b.labels_))
    # every supervised metric of Table I is logged per epoch (the report's curves), as scikit-learn has it
    assert b.curve_[-1]["completeness"] == pytest.approx(completeness_score(y, b.labels_))
    assert b.curve_[-1]["homogeneity"] == pytest.approx(homogeneity_score(y, b.labels_))
    assert b.curve_[-1]["fmi"] == pytest.approx(fowlkes_mallows_score(y, b.labels_))


def test_camsat_discovers_fewer_clusters_than_imsat_from_4x() -> None:
    """Started with 4x the true number of clusters (20 speakers, C = 80, batches of 160 so that, as at the
    papers' scale, a batch cannot enforce the use of every cluster through mu H(Y)), CAMSAT (augmentation
    consistency + symmetry over i-vector-space views) ends with fewer non-empty clusters than IMSAT."""
    x, y = blobs(n_per=40, k=20, d=32, spread=0.15, seed=3)
    common = dict(SMALL, epochs=40, batch_size=160, view_noise_scale=1.0)
    imsat = DeepIMClustering(n_clusters=80, **common).fit(x)
    camsat = DeepIMClustering(n_clusters=80, aug_weight=1.0, symmetry_weight=1.0, **common).fit(x)
    assert camsat.views_used_ == "ivector" and imsat.views_used_ == "none"
    n_imsat = len(np.unique(imsat.labels_))
    n_camsat = len(np.unique(camsat.labels_))
    assert n_camsat < n_imsat, (n_camsat, n_imsat)


def test_audio_views_are_used_when_given() -> None:
    x, _ = blobs(n_per=30, k=4)
    views = np.stack([x + 0.01, x - 0.01]).astype(np.float32)
    p = dict(SMALL, epochs=2, aug_weight=1.0, symmetry_weight=1.0)
    assert DeepIMClustering(n_clusters=4, **p).fit(x, views=views).views_used_ == "audio"
    est = DeepIMClustering(n_clusters=4, views_source="ivector", **p).fit(x, views=views)
    assert est.views_used_ == "ivector"
    with pytest.raises(Exception, match="views"):
        DeepIMClustering(n_clusters=4, views_source="audio", **p).fit(x)


def test_frozen_bn_keeps_running_stats() -> None:
    m = ClusterMLP(6, 3, [8])
    m.train()
    m(torch.randn(16, 6))
    bn = m.body[1]
    before = (bn.running_mean.clone(), bn.running_var.clone(), int(bn.num_batches_tracked))
    with frozen_bn_stats(m):
        m(torch.randn(16, 6) * 5 + 3)
    assert torch.equal(bn.running_mean, before[0]) and torch.equal(bn.running_var, before[1])
    assert int(bn.num_batches_tracked) == before[2] and bn.momentum == 0.1
    m(torch.randn(16, 6) * 5 + 3)
    assert not torch.equal(bn.running_mean, before[0])


def test_output_layer_starts_near_uniform() -> None:
    m = ClusterMLP(20, 50)
    m.eval()
    with torch.no_grad():
        p = torch.softmax(m(torch.randn(64, 20)), 1)
    assert float((p - 1 / 50).abs().max()) < 1e-3


def test_resume_equals_uninterrupted(tmp_path: Path) -> None:
    x, _ = blobs(n_per=50, k=4)
    params = dict(SMALL, mixup_weight=1.0, aug_weight=1.0, symmetry_weight=1.0, supcon_weight=1.0)
    full = DeepIMClustering(n_clusters=6, **dict(params, epochs=4), checkpoint_dir=str(tmp_path / "a")).fit(x)
    DeepIMClustering(n_clusters=6, **dict(params, epochs=2), checkpoint_dir=str(tmp_path / "b")).fit(x)
    resumed = DeepIMClustering(n_clusters=6, **dict(params, epochs=4),
                               checkpoint_dir=str(tmp_path / "b")).fit(x)
    want, got = full.model_.state_dict(), resumed.model_.state_dict()
    for k in want:
        assert torch.equal(want[k], got[k]), k
    assert [r["total"] for r in full.curve_] == [r["total"] for r in resumed.curve_]
    # A checkpoint of other options is not resumed.
    other = DeepIMClustering(n_clusters=6, **dict(params, epochs=4, lam=0.3),
                             checkpoint_dir=str(tmp_path / "b")).fit(x)
    assert len(other.curve_) == 4 and other.curve_[0]["total"] != full.curve_[0]["total"]


def test_every_named_config_builds() -> None:
    names = methods()
    for m in ("imsat", "cimc", "cimc_minus", "imsat_mixup", "cimc_plus", "cimc_plusplus", "camsat",
              "mixup_only", "supcon_only", "mixup_supcon", "vicreg", "imsat_mixup_vicreg", "cimc_vicreg"):
        assert m in names
        est, settings = build(method_config(m), n_clusters=7)
        assert est.n_clusters == 7 and settings["input_norm"] == "l2"


def test_kill_and_resume_through_the_cli(tmp_path: Path, root: Path, recipe_env: dict[str, str]) -> None:
    """cluster.py killed (SIGKILL to its process group) after epoch 2 and rerun gives the network of an
    uninterrupted run."""
    x, y = blobs(n_per=200, k=6, d=32)
    np.save(tmp_path / "x.npy", x)
    args = [sys.executable, str(root / "pyscripts/cluster.py"), "--method", "cimc", "--num-clusters", "8",
            "--device", "cpu", "--set", "hidden=256-256", "--set", "epochs=12", "--set", "batch_size=300",
            "--set", "verbose=false", str(tmp_path / "x.npy")]
    r = subprocess.run([*args, str(tmp_path / "full")], env=recipe_env, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    p = subprocess.Popen([*args, str(tmp_path / "killed")], env=recipe_env, start_new_session=True,
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    ckpt = tmp_path / "killed/ckpt/last.pt"
    deadline = time.time() + 120
    while time.time() < deadline:
        if ckpt.is_file() and torch.load(ckpt, weights_only=False)["epoch"] >= 2:
            break
        time.sleep(0.05)
    os.killpg(p.pid, signal.SIGKILL)
    p.wait()
    epoch_at_kill = torch.load(ckpt, weights_only=False)["epoch"]
    assert 2 <= epoch_at_kill < 12 and not (tmp_path / "killed/labels").exists()
    r = subprocess.run([*args, str(tmp_path / "killed")], env=recipe_env, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    a = torch.load(tmp_path / "full/final.pt", weights_only=False)["model"]
    b = torch.load(tmp_path / "killed/final.pt", weights_only=False)["model"]
    for k in a:
        assert torch.equal(a[k], b[k]), k
    assert (tmp_path / "full/labels").read_text() == (tmp_path / "killed/labels").read_text()
