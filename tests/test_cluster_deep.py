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
from sslsv.tables import DataError


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


# The papers' epoch mode (steps 0, one batch of min(batch_size, N) per epoch) with a small Adam network.
SMALL = dict(hidden="128-128", batch_size=400, batches_per_epoch=1, steps=0, epochs=40, optimizer="adam",
             lr=0.002, lr_decay=1.0, device="cpu", verbose=False)


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


def _interrupt_after(monkeypatch: pytest.MonkeyPatch, epoch: int) -> None:
    """Make the next fit stop (as a kill would) right after the checkpoint of ``epoch``."""
    def stop(self: DeepIMClustering, e: int, epochs: int) -> bool:
        if e == epoch:
            raise KeyboardInterrupt
        return False
    monkeypatch.setattr(DeepIMClustering, "_log_epoch", stop)


def test_resume_equals_uninterrupted(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    x, _ = blobs(n_per=50, k=4)
    params = dict(SMALL, epochs=4, mixup_weight=1.0, aug_weight=1.0, symmetry_weight=1.0, supcon_weight=1.0)
    full = DeepIMClustering(n_clusters=6, **params, checkpoint_dir=str(tmp_path / "a")).fit(x)
    with monkeypatch.context() as m:
        _interrupt_after(m, 2)
        with pytest.raises(KeyboardInterrupt):
            DeepIMClustering(n_clusters=6, **params, checkpoint_dir=str(tmp_path / "b")).fit(x)
    assert torch.load(tmp_path / "b/run0/last.pt", weights_only=False)["epoch"] == 2
    resumed = DeepIMClustering(n_clusters=6, **params, checkpoint_dir=str(tmp_path / "b")).fit(x)
    want, got = full.model_.state_dict(), resumed.model_.state_dict()
    for k in want:
        assert torch.equal(want[k], got[k]), k
    assert [r["total"] for r in full.curve_] == [r["total"] for r in resumed.curve_]
    # A checkpoint of other options is not resumed.
    other = DeepIMClustering(n_clusters=6, **dict(params, lam=0.3), checkpoint_dir=str(tmp_path / "b")).fit(x)
    assert len(other.curve_) == 4 and other.curve_[0]["total"] != full.curve_[0]["total"]


@pytest.mark.parametrize("change", [dict(epochs=1), dict(steps=3, epochs=150), dict(batch_size=100),
                                    dict(lr=0.01), dict(hidden="64"), dict(vat_k=3), dict(num_threads=2),
                                    dict(lr_decay=0.9), dict(min_batch_size=8, batches_per_epoch=4)])
def test_every_training_parameter_is_in_the_fingerprint(tmp_path: Path, change: dict) -> None:
    """A rerun into the same directory with any other training parameter (fewer epochs included) starts
    afresh instead of returning the other run's network: the curve has the new run's length and equals a
    run into a fresh directory."""
    x, _ = blobs(n_per=30, k=4)
    params = dict(SMALL, epochs=3)
    DeepIMClustering(n_clusters=4, **params, checkpoint_dir=str(tmp_path / "a")).fit(x)
    rerun = DeepIMClustering(n_clusters=4, **dict(params, **change),
                             checkpoint_dir=str(tmp_path / "a")).fit(x)
    fresh = DeepIMClustering(n_clusters=4, **dict(params, **change)).fit(x)
    assert len(rerun.curve_) == len(fresh.curve_) == rerun.schedule_.epochs
    assert [r["total"] for r in rerun.curve_] == [r["total"] for r in fresh.curve_]


def test_schedule_in_steps() -> None:
    """The batch follows N, the number of optimiser steps is the config's, epochs follow; the papers'
    epoch mode reproduces their arithmetic (one batch of N per epoch on small data, 106 batches of
    10,240 per epoch on VoxCeleb2's 1,092,009 utterances)."""
    from sslsv.cluster.deep.schedule import plan

    base = dict(steps=3000, epochs=150, batch_size=10240, min_batch_size=64, batches_per_epoch=8, lr=0.002,
                lr_decay=0.996, lr_final=0.1)
    s = plan(2000, **base)
    assert (s.batch_size, s.batches_per_epoch, s.epochs, s.steps) == (250, 8, 375, 3000)
    assert s.lr_at(0) == 0.002 and s.lr_at(2999) == pytest.approx(0.0002)
    assert s.lr_at(1500) == pytest.approx(0.002 * 0.1 ** (1500 / 2999))
    assert plan(300, **base).batch_size == 64                     # the floor: 300 // 8 = 37 < 64
    assert plan(50, **base).batch_size == 50                      # never more than N
    s = plan(1_092_009, **base)
    assert (s.batch_size, s.batches_per_epoch, s.epochs) == (10240, 106, 29)
    paper = dict(base, steps=0, batches_per_epoch=1, lr=0.01)
    s = plan(2000, **paper)
    assert (s.batch_size, s.batches_per_epoch, s.epochs, s.steps) == (2000, 1, 150, 150)
    s = plan(1_092_009, **paper)
    assert (s.batch_size, s.batches_per_epoch, s.steps) == (10240, 106, 15900)
    assert s.lr_at(106 * 3 - 1) == pytest.approx(0.01 * 0.996 ** 2)
    assert s.lr_at(106 * 3) == pytest.approx(0.01 * 0.996 ** 3)
    with pytest.raises(DataError):
        plan(2000, **dict(base, steps=0, epochs=0))
    # The estimator trains exactly that many steps (the last epoch may be partial).
    x, _ = blobs(n_per=25, k=4)
    est = DeepIMClustering(n_clusters=4, hidden="linear", steps=30, min_batch_size=16, batches_per_epoch=4,
                           device="cpu", verbose=False).fit(x)
    assert (est.schedule_.batch_size, est.schedule_.batches_per_epoch, est.schedule_.epochs) == (25, 4, 8)
    assert [r["step"] for r in est.curve_] == [4, 8, 12, 16, 20, 24, 28, 30]
    assert est.curve_[-1]["lr"] == pytest.approx(est.lr * est.lr_final)
    # Many short epochs: a curve row (evaluation and checkpoint) every ceil(epochs / 150) epochs, the
    # losses averaged over the steps since the previous row.
    est = DeepIMClustering(n_clusters=4, hidden="linear", steps=400, batch_size=100, min_batch_size=100,
                           batches_per_epoch=1, device="cpu", verbose=False).fit(x)
    assert est.schedule_.epochs == 400 and est.schedule_.row_every == 3
    assert [r["epoch"] for r in est.curve_] == [*range(3, 400, 3), 400]
    assert est.curve_[-1]["step"] == 400


def test_head_rule() -> None:
    """``hidden: auto`` trains a linear head on small data (few vectors per cluster), and a linear head
    and the rule's hidden head where the rule's N and N / C both hold; an explicit value is used as
    given."""
    from sslsv.cluster.deep.schedule import HEAD_RULE, auto_heads

    assert auto_heads(2000, 100) == ("",) and auto_heads(768, 48) == ("",)
    for min_n, per_cluster, hidden in HEAD_RULE:
        assert auto_heads(min_n, min_n // per_cluster) == ("", hidden)
        assert auto_heads(min_n - 1, (min_n - 1) // per_cluster) == ("",)
        assert auto_heads(min_n, min_n // per_cluster + 1) == ("",)
    x, _ = blobs(n_per=25, k=4)
    est = DeepIMClustering(n_clusters=4, steps=2, device="cpu", verbose=False).fit(x)
    assert est.hidden_ == "linear" and isinstance(est.model_.body, torch.nn.Sequential)
    assert len(est.model_.body) == 0 and est.model_.out.in_features == x.shape[1]
    assert [r["head"] for r in est.runs_] == ["linear"]
    est = DeepIMClustering(n_clusters=4, hidden="16-8", steps=2, device="cpu", verbose=False).fit(x)
    assert est.hidden_ == "16-8" and est.model_.out.in_features == 8


def test_auto_head_keeps_the_lower_objective(monkeypatch, tmp_path) -> None:
    """Where the rule offers a hidden head, both heads are trained and the one of lower unsupervised
    objective is kept; it is the run an explicit ``hidden`` of that head gives, and a rerun resumes
    both runs from their checkpoints."""
    from sslsv.cluster.deep import estimator as est_mod

    monkeypatch.setattr(est_mod, "auto_heads", lambda n, c: ("", "16"))
    x, _ = blobs(n_per=25, k=4)
    common = dict(n_clusters=4, steps=40, device="cpu", verbose=False, random_state=2)
    auto = DeepIMClustering(**common, checkpoint_dir=str(tmp_path)).fit(x)
    assert [r["head"] for r in auto.runs_] == ["linear", "16"]
    objectives = [r["objective"] for r in auto.runs_]
    kept = int(np.argmin(objectives))
    assert auto.best_run_ == kept and auto.hidden_ == ["linear", "16"][kept]
    single = DeepIMClustering(**common, hidden=auto.hidden_).fit(x)
    assert single.objective_ == pytest.approx(auto.objective_, rel=1e-6)
    np.testing.assert_array_equal(single.labels_, auto.labels_)
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith("run")) == ["run0", "run1"]
    again = DeepIMClustering(**common, checkpoint_dir=str(tmp_path)).fit(x)
    assert [r["objective"] for r in again.runs_] == objectives


def test_restarts_keep_the_lowest_unsupervised_objective() -> None:
    """``n_init`` runs from seeds random_state + i; the kept one has the lowest objective, equals the
    single run of that seed, and the evaluation labels play no part in the choice."""
    x, y = blobs(n_per=30, k=6, d=16, spread=0.3, seed=5)
    params = dict(n_clusters=6, hidden="linear", steps=60, device="cpu", verbose=False, random_state=3)
    est = DeepIMClustering(n_init=3, **params).fit(x, eval_labels=y)
    objs = [r["objective"] for r in est.runs_]
    assert [r["seed"] for r in est.runs_] == [3, 4, 5] and len(set(objs)) == 3
    assert est.best_run_ == int(np.argmin(objs)) and est.objective_ == min(objs)
    single = DeepIMClustering(**dict(params, random_state=3 + est.best_run_)).fit(x)
    assert np.array_equal(single.labels_, est.labels_) and single.objective_ == est.objective_
    assert single.objective(single.model_, *_objective_args(single, x)) == single.objective_
    without_labels = DeepIMClustering(n_init=3, **params).fit(x)
    assert without_labels.best_run_ == est.best_run_


def _objective_args(est: DeepIMClustering, x: np.ndarray) -> tuple:
    from sslsv.cluster.deep.estimator import _Data

    xt = torch.from_numpy(x)
    from sslsv.cluster.deep.knn import kth_neighbor_distance

    delta = torch.from_numpy(kth_neighbor_distance(x, k=est.vat_k_).astype(np.float32))
    return _Data(xt, delta, None, est.vat_xi * est.knn_distance_median_, est._augment(x)), est.schedule_


def test_results_do_not_depend_on_the_thread_count() -> None:
    """The CPU training runs with ``num_threads`` (1) whatever the process' thread count, so a machine
    with more cores (or a busy one) gives the same labels; the caller's setting is restored."""
    x, _ = blobs(n_per=40, k=10, d=50, spread=0.3)
    params = dict(n_clusters=10, hidden="256", steps=120, device="cpu", verbose=False)
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        a = DeepIMClustering(**params).fit(x)
        torch.set_num_threads(2)
        b = DeepIMClustering(**params).fit(x)
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)
    assert np.array_equal(a.labels_, b.labels_)
    assert np.array_equal(a.predict_proba(x), b.predict_proba(x))


def test_typed_overrides() -> None:
    """``--set out_init_scale=1e-4`` (YAML 1.1 reads it as a string) reaches the estimator as a float, an
    integer option accepts ``3e3``, and a non-number is an error naming the option."""
    est, settings = build(method_config("imsat"), ["out_init_scale=1e-4", "steps=3e3", "vat_k=auto"])
    assert est.out_init_scale == 1e-4 and isinstance(est.out_init_scale, float)
    assert est.steps == 3000 and isinstance(est.steps, int) and est.vat_k == "auto"
    with pytest.raises(DataError, match="steps"):
        build(method_config("imsat"), ["steps=many"])
    with pytest.raises(DataError, match="steps"):
        build(method_config("imsat"), ["steps=2.5"])


def test_paper_configs_are_the_papers_setting() -> None:
    """``<method>_paper.yaml`` = the method's loss terms + the papers' schedule (SGD 0.9, lr 0.01 x 0.996
    per epoch, batch 10,240, 150 epochs, 1200-1200)."""
    for m in ("imsat", "cimc", "camsat", "cimc_plus", "vicreg"):
        plain, _ = build(method_config(m))
        paper, _ = build(method_config(f"{m}_paper"))
        p = paper.get_params()
        assert (p["optimizer"], p["lr"], p["momentum"], p["lr_decay"], p["batch_size"], p["epochs"],
                p["steps"], p["hidden"]) == ("sgd", 0.01, 0.9, 0.996, 10240, 150, 0, "1200-1200")
        losses = [k for k in p if k.endswith("_weight")]
        assert {k: p[k] for k in losses} == {k: plain.get_params()[k] for k in losses}


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
            "--device", "cpu", "--set", "hidden=256-256", "--set", "steps=0", "--set", "epochs=12",
            "--set", "batch_size=300", "--set", "batches_per_epoch=1",
            "--set", "verbose=false", str(tmp_path / "x.npy")]
    r = subprocess.run([*args, str(tmp_path / "full")], env=recipe_env, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    p = subprocess.Popen([*args, str(tmp_path / "killed")], env=recipe_env, start_new_session=True,
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    ckpt = tmp_path / "killed/ckpt/run0/last.pt"
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
