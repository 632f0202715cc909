"""Extending the clustering stage: a new method is one module (a class registered by name) plus one YAML,
found by discovery and run by stage 6's entry point; a new deep loss term is one function plus one row of
the term table. Also pins the deep estimator's results (labels, losses) to the values it gave before the
term table replaced its chain of ``if``s."""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from sklearn.base import BaseEstimator, ClusterMixin
from sslsv.cluster import build, method_config, registry
from sslsv.cluster._base import as_labels, check_input
from sslsv.cluster.deep import losses
from sslsv.cluster.deep.estimator import DeepIMClustering
from sslsv.study import load_study
from sslsv.tables import DataError

# Every estimator registered today, by the module that registers it: a module that discovery loses fails
# test_discovery_finds_every_estimator.
KNOWN_ESTIMATORS = {"kmeans": "classical", "minibatch_kmeans": "classical", "gmm": "classical",
                    "birch": "classical", "agglomerative": "classical", "spectral": "classical",
                    "hdbscan": "hdbscan_pipeline", "dec": "dec", "deep_im": "deep.estimator"}


@pytest.fixture
def scratch_registry(monkeypatch: pytest.MonkeyPatch):
    """The registry with every real estimator found, whose registrations made during the test are undone."""
    found = registry.estimators()
    monkeypatch.setattr(registry, "_ESTIMATORS", dict(found))
    return registry


def _load_cluster_py(root: Path):
    spec = importlib.util.spec_from_file_location("cluster_stage6", root / "pyscripts/cluster.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


# -- discovery -------------------------------------------------------------------------------------------


def test_discovery_finds_every_estimator() -> None:
    est = registry.estimators()
    assert set(KNOWN_ESTIMATORS) <= set(est)
    for name, module in KNOWN_ESTIMATORS.items():
        assert est[name].__module__ == f"sslsv.cluster.{module}" and est[name].registry_name == name
    mods = registry.package_modules()
    assert mods == sorted(mods) and "sslsv.cluster.deep.estimator" in mods
    assert not any(m.endswith("__main__") for m in mods)


def test_discovery_imports_no_optional_dependency(root: Path, recipe_env: dict[str, str]) -> None:
    """Finding the estimators imports every module of the package, but none of the optional heavy
    packages that some methods use (they are imported when a method needs them)."""
    code = ("import sys; from sslsv.cluster import estimators; estimators(); "
            "print(' '.join(m for m in ('faiss', 'hdbscan', 'kaldiio') if m in sys.modules))")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=recipe_env, cwd=root)
    assert r.returncode == 0, r.stderr[-2000:]
    assert r.stdout.strip() == ""


def test_new_module_is_discovered(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                  scratch_registry) -> None:
    """A module dropped into the package (here: a folder added to its path) is found without being
    listed anywhere."""
    (tmp_path / "toy_discovered_mod.py").write_text(
        "from sslsv.cluster.registry import register\n\n\n"
        "@register('toy_discovered')\nclass Toy:\n    pass\n")
    pkg = importlib.import_module("sslsv.cluster")
    monkeypatch.setattr(pkg, "__path__", [*pkg.__path__, str(tmp_path)])
    registry._discover.cache_clear()
    importlib.invalidate_caches()
    try:
        assert "sslsv.cluster.toy_discovered_mod" in registry.package_modules()
        assert registry.estimator_class("toy_discovered").__module__ == "sslsv.cluster.toy_discovered_mod"
    finally:
        sys.modules.pop("sslsv.cluster.toy_discovered_mod", None)
        registry._discover.cache_clear()


# -- a new method: one class and one YAML, through stage 6's entry point --------------------------------


def test_toy_method_through_stage6_entry_point(tmp_path: Path, root: Path, scratch_registry,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    @registry.register("toy_rank")
    class RankClustering(BaseEstimator, ClusterMixin):
        """Cuts the points into ``n_clusters`` equal groups by their first coordinate."""

        def __init__(self, n_clusters: int = 2, reverse: bool = False) -> None:
            self.n_clusters = n_clusters
            self.reverse = reverse

        def fit(self, X, y=None):
            X = check_input(X, min_samples=2)
            key = -X[:, 0] if self.reverse else X[:, 0]
            rank = np.argsort(np.argsort(key, kind="stable"), kind="stable")
            self.labels_ = as_labels(rank * self.n_clusters // len(X))
            return self

    @registry.register("toy_own_count")
    class OwnCount(BaseEstimator, ClusterMixin):
        """Finds the number of clusters itself: one cluster per sign of the first coordinate."""

        def fit(self, X, y=None):
            self.labels_ = as_labels(check_input(X)[:, 0] > 0)
            return self

    conf = tmp_path / "conf"
    conf.mkdir()
    (conf / "toy.yaml").write_text("# a toy method\nestimator: toy_rank\ninput_norm: none\n"
                                   "params:\n  n_clusters: 2\n  reverse: true\n")
    (conf / "toy_own.yaml").write_text("estimator: toy_own_count\ninput_norm: none\n")
    x = np.random.default_rng(0).standard_normal((30, 4))
    np.save(tmp_path / "x.npy", x)
    (tmp_path / "x.keys").write_text("\n".join(f"u{i:02d}" for i in range(30)) + "\n")
    utt2spk = tmp_path / "utt2spk"
    utt2spk.write_text("".join(f"u{i:02d} s{i % 3}\n" for i in range(30)))

    # The same entry point as steps/cluster.sh (cluster.py main), with a method of a temporary conf dir.
    cluster_py = _load_cluster_py(root)
    out = tmp_path / "out"
    assert cluster_py.main(["--conf-dir", str(conf), "--method", "toy", "--num-clusters", "3",
                            "--utt2spk", str(utt2spk), str(tmp_path / "x.npy"), str(out)]) == 0
    labels = dict(line.split() for line in (out / "labels").read_text().splitlines())
    rank = np.argsort(np.argsort(-x[:, 0], kind="stable"), kind="stable")
    assert [int(labels[f"u{i:02d}"]) for i in range(30)] == list(rank * 3 // 30)
    res = json.loads((out / "metrics.json").read_text())
    assert res["estimator"] == "toy_rank" and res["n_clusters_requested"] == 3
    assert res["num_clusters_found"] == 3 and "acc" in res["metrics"]

    # One answer to "does it take a number of clusters", for build, study grids and the sweep script.
    assert registry.takes_n_clusters("toy", conf) and not registry.takes_n_clusters("toy_own", conf)
    assert not registry.takes_n_clusters("hdbscan") and registry.takes_n_clusters("cimc")
    with pytest.raises(DataError, match="finds the number of clusters itself"):
        build(conf / "toy_own.yaml", n_clusters=3)
    capsys.readouterr()
    assert registry.main(["takes-c", "--conf-dir", str(conf), "toy", "toy_own"]) == 0
    assert capsys.readouterr().out.split("\n")[:2] == ["toy yes", "toy_own no"]
    study = tmp_path / "s.yaml"
    study.write_text("grids:\n  - methods: [toy]\n")
    assert [c.method for c in load_study(study, conf).cells] == ["toy"]
    study.write_text("grids:\n  - methods: [toy, toy_own]\n")
    with pytest.raises(DataError, match="'toy_own' chooses its own number of clusters"):
        load_study(study, conf)


def test_registry_command_line(root: Path, recipe_env: dict[str, str]) -> None:
    """What local/cluster_sweep.sh asks: hdbscan is the only method of its list that picks C itself."""
    sweep = (root / "local/cluster_sweep.sh").read_text()
    methods = sweep.split('\nmethods="', 1)[1].split('"', 1)[0].split()
    r = subprocess.run([sys.executable, "-m", "sslsv.cluster", "takes-c", *methods], capture_output=True,
                       text=True, env=recipe_env, cwd=root)
    assert r.returncode == 0, r.stderr[-2000:]
    answers = dict(line.split() for line in r.stdout.splitlines())
    assert list(answers) == methods and [m for m, a in answers.items() if a == "no"] == ["hdbscan"]
    r = subprocess.run([sys.executable, "-m", "sslsv.cluster", "takes-c", "kmeans", "nosuch"],
                       capture_output=True, text=True, env=recipe_env, cwd=root)
    assert r.returncode == 1 and "no config for clustering method 'nosuch'" in r.stderr


# -- a new deep loss term: one function and one row ---------------------------------------------------------


def _blobs(n_per: int = 40, k: int = 6, d: int = 16, spread: float = 0.15, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    c = rng.standard_normal((k, d))
    c /= np.linalg.norm(c, axis=1, keepdims=True)
    y = np.repeat(np.arange(k), n_per)
    x = c[y] + spread * rng.standard_normal((len(y), d))
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    return x.astype(np.float32)


FAST = ["steps=12", "hidden=32-32", "min_batch_size=64", "device=cpu", "verbose=false"]


def _logit_energy(b: losses.Batch) -> torch.Tensor:
    """The toy term: mean squared clean logit."""
    return b.logits.pow(2).mean()


def _fit(method: str, toy_weight: float | None = None, *extra: str) -> DeepIMClustering:
    est, _ = build(method_config(method), [*FAST, *extra], n_clusters=12)
    if toy_weight is not None:
        est.toy_weight = toy_weight      # the new term's weight (a constructor parameter in real code)
    return est.fit(_blobs())


def test_toy_loss_term(monkeypatch: pytest.MonkeyPatch) -> None:
    base = _fit("cimc")
    monkeypatch.setattr(losses, "TERMS", (*losses.TERMS, losses.Term("toy", "toy_weight", _logit_energy)))

    # Weight 0: the row is there but off; every number is the same as without it.
    off = _fit("cimc", 0.0)
    assert np.array_equal(off.labels_, base.labels_) and off.objective_ == base.objective_
    assert [{k: v for k, v in r.items() if k not in ("seconds", "toy")} for r in off.curve_] == \
        [{k: v for k, v in r.items() if k != "seconds"} for r in base.curve_]
    assert all(r["toy"] == 0.0 for r in off.curve_)

    # Weight 0.5: the term is in the curve and in the total with its weight, and changes the training.
    on = _fit("cimc", 0.5)
    coef = {"cond_ent": on.lam, "marg_ent": -on.lam * on.mu, "vat": 1.0, "mixup": 1.0, "supcon": 1.0,
            "toy": 0.5}
    for row in on.curve_:
        assert row["toy"] > 0
        assert row["total"] == pytest.approx(sum(c * row[k] for k, c in coef.items()), rel=1e-5, abs=1e-6)
    assert [r["total"] for r in on.curve_] != [r["total"] for r in base.curve_]
    assert on.objective_ != base.objective_


def test_total_loss_adds_weight_times_term() -> None:
    """One batch, by hand: a row adds weight x its value to the total and reports the value."""
    torch.manual_seed(0)
    model = torch.nn.Linear(4, 3)
    x = torch.randn(8, 4)
    est = SimpleNamespace(im_weight=1.0, lam=0.5, mu=3.5, toy_weight=0.25)
    rows = losses.TERMS[:2]                      # the two entropies: no random draws
    toy = losses.Term("toy", "toy_weight", _logit_energy)

    def batch() -> losses.Batch:
        return losses.Batch(est, model, x, torch.ones(8), 0.1, None, None, model(x))

    base, values = losses.total_loss(batch(), rows)
    total, with_toy = losses.total_loss(batch(), (*rows, toy))
    energy = model(x).pow(2).mean().item()
    assert set(values) == {"cond_ent", "marg_ent"} and with_toy["toy"] == pytest.approx(energy)
    assert total.item() == pytest.approx(base.item() + 0.25 * energy, rel=1e-6)
    est.toy_weight = 0.0
    total, off = losses.total_loss(batch(), (*rows, toy))
    assert "toy" not in off and total.item() == base.item()
    (g,) = torch.autograd.grad(losses.total_loss(batch(), (*rows, toy))[0], model.weight)
    (g0,) = torch.autograd.grad(losses.total_loss(batch(), rows)[0], model.weight)
    assert torch.equal(g, g0)


# -- the term table gives the numbers of the former chain of ifs ----------------------------------------


# Recorded with the estimator as it was before the term table (same data, options and seed): the labels'
# SHA-256 (first 16 hex digits), the last curve row's mean loss and the restart criterion, with torch's
# AVX2 CPU kernels. On the machine that recorded them the refactored code gives these exact floats; the
# tolerance only allows for other CPUs' float sums. Torch's AVX-512 kernels sum in another order, which
# changes the labels after a few hundred steps: on such a CPU the test reruns itself with
# ATEN_CPU_CAPABILITY=avx2.
KNOWN = [
    ("imsat", (), "329afde74e794480", -3.415938218434652, -3.4312278429667153),
    ("cimc", (), "c934dec0a14ddd67", -3.31807017326355, -3.354591687520345),
    ("cimc", ("supcon_min_confidence=0",), "9627f980b59de5e0", 0.3449575901031494, 0.24754484494527182),
    ("camsat", (), "8bdc69edf80767a1", -3.3428441683451333, -3.3719754219055176),
    ("cimc_plusplus", (), "12195ed178ab38f0", -1.6704849402109783, -1.8234103918075562),
    ("vicreg", (), "51d36017d68e04c6", 3.594477812449137, 3.1195371945699057),
]


@pytest.mark.parametrize(("method", "extra", "labels_sha", "loss", "objective"), KNOWN,
                         ids=[f"{m}{'-' + '-'.join(e) if e else ''}" for m, e, *_ in KNOWN])
def test_deep_results_unchanged_by_term_table(method: str, extra: tuple[str, ...], labels_sha: str,
                                              loss: float, objective: float, request: pytest.FixtureRequest
                                              ) -> None:
    cap = torch.backends.cpu.get_cpu_capability()
    if cap != "AVX2":
        if os.environ.get("ATEN_CPU_CAPABILITY") == "avx2":
            pytest.skip(f"the numbers were recorded with torch's AVX2 kernels; this CPU runs {cap}")
        r = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                            f"{__file__}::{request.node.name}"], capture_output=True, text=True,
                           env={**os.environ, "ATEN_CPU_CAPABILITY": "avx2"})
        assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-2000:]
        return
    est = _fit(method, None, *extra)
    assert hashlib.sha256(est.labels_.tobytes()).hexdigest()[:16] == labels_sha
    assert est.curve_[-1]["total"] == pytest.approx(loss, rel=1e-6)
    assert est.objective_ == pytest.approx(objective, rel=1e-6)
