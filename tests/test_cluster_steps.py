"""Every named clustering method through steps/cluster.sh on real demo i-vectors (stage 5 of the recipe
run by the ``demo_ivectors`` fixture), then stages 6-7 through run.sh."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import numpy as np
import pytest
import yaml
from sslsv.cluster import methods
from sslsv.cluster.metrics import METRICS, clustering_metrics
from sslsv.cluster.registry import resolved_config
from sslsv.datadir import validate_data_dir
from sslsv.tables import read_map

FAST_DEEP = "steps=16 hidden=64-64 min_batch_size=96"  # 2 epochs of 8 batches of 96
FAST_PAPER = "epochs=2 hidden=64-64"                  # the papers' epoch mode: 2 epochs of one batch
FAST_DEC = "pretrain_epochs=3 max_iter=100 n_init=2"


# The <method>_paper configs differ from <method> only in the schedule (test_cluster_deep checks them);
# one of them runs here.
@pytest.mark.parametrize("method", [m for m in methods() if not m.endswith("_paper")] + ["cimc_paper"])
def test_method_through_step(method: str, demo_ivectors: Path, root: Path,
                             recipe_env: dict[str, str]) -> None:
    work = demo_ivectors
    out = work / "exp/cluster_test" / method
    cfg = resolved_config(root / f"conf/cluster/{method}.yaml")
    deep = cfg["estimator"] == "deep_im"
    cmd = [str(root / "steps/cluster.sh"), "--method", method,
           "--utt2spk", str(work / "data/demo_train/utt2spk"),
           "--views", str(work / "exp/ivectors_demo_train_aug"),
           "--utt2uniq", str(work / "data/demo_train_aug/utt2uniq")]
    if method != "hdbscan":
        cmd += ["--num-clusters", "48"]
    if deep or method == "dec":
        fast = FAST_PAPER if method.endswith("_paper") else FAST_DEEP
        cmd += ["--set-opts", fast if deep else FAST_DEC]
    r = subprocess.run([*cmd, str(work / "exp/ivectors_demo_train"), str(out)], env=recipe_env,
                       capture_output=True, text=True, cwd=root)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    labels = dict(line.split() for line in (out / "labels").read_text().splitlines())
    u2s = read_map(work / "data/demo_train/utt2spk")
    assert set(labels) == set(u2s)
    res = json.loads((out / "metrics.json").read_text())
    assert list(res["metrics"]) == list(METRICS)
    keys = sorted(labels)
    pred = np.array([int(labels[k]) for k in keys])
    if (pred >= 0).all():   # the written metrics are those of the written labels
        ref = clustering_metrics(pred, [u2s[k] for k in keys], names=["acc", "nmi", "num_clusters"])
        assert res["metrics"]["acc"] == pytest.approx(ref["acc"])
        assert res["metrics"]["nmi"] == pytest.approx(ref["nmi"])
    if method != "hdbscan":   # two epochs of a deep method need not separate anything yet
        assert (1 if deep else 2) <= res["num_clusters_found"] <= 48
    if deep:
        curve = (out / "curve.tsv").read_text().splitlines()
        assert len(curve) == 3 and "acc" in curve[0] and "num_clusters" in curve[0]
        train = res["training"]     # what the fit resolved: 2 epochs either way (see FAST_*)
        assert train["epochs"] == 2 and train["head"] == "64-64" and len(train["runs"]) == 1
        uses_views = any(f"{k}_weight" in cfg["params"]
                         for k in ("aug", "symmetry", "info_nce", "vicreg_inv"))
        source = cfg["params"].get("views_source", "auto")
        want = ("ivector" if source == "ivector" else "audio") if uses_views else "none"
        assert res["views_used"] == want
    # An unchanged rerun is skipped.
    r2 = subprocess.run([*cmd, str(work / "exp/ivectors_demo_train"), str(out)], env=recipe_env,
                        capture_output=True, text=True, cwd=root)
    assert r2.returncode == 0 and "up to date" in r2.stdout


def test_run_sh_stages_6_7(demo_ivectors: Path, root: Path) -> None:
    work = demo_ivectors
    cmd = [str(root / "run.sh"), "--corpus", "demo", "--corpus-dir", str(work / "corpus"),
           "--data", str(work / "data"), "--exp", str(work / "exp"), "--mfcc-dir", str(work / "mfcc"),
           "--stage", "6", "--stop-stage", "7", "--cluster-method", "cimc", "--num-clusters", "60",
           "--cluster-opts", "steps=6 hidden=64-64", "--min-cluster-size", "3"]
    r = subprocess.run(cmd, capture_output=True, text=True)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    pl = work / "data/demo_train_pl_cimc_c60"
    validate_data_dir(pl, spk_sort=False)
    info = json.loads((pl / "pseudo_labels.json").read_text())
    u2s = read_map(pl / "utt2spk")
    assert info["utterances"] == len(u2s) and info["speakers"] == len(set(u2s.values()))
    sizes = np.unique(list(u2s.values()), return_counts=True)[1]
    assert sizes.min() >= 3
    assert info["utterances"] + info["dropped_utterances"] == 768
    assert (work / "exp/cluster/cimc_c60/curve.tsv").is_file()


def test_seed_reaches_clustering_and_names_its_result(demo_ivectors: Path, root: Path) -> None:
    """run.sh --seed N (N != 0) clusters with random_state N into <method>_c<C>_sN, records the seed, and
    leaves seed 0's result alone (before, every seed wrote the same directory with random_state 0)."""
    work = demo_ivectors
    base = [str(root / "run.sh"), "--corpus", "demo", "--corpus-dir", str(work / "corpus"),
            "--data", str(work / "data"), "--exp", str(work / "exp"), "--mfcc-dir", str(work / "mfcc"),
            "--stage", "6", "--stop-stage", "6", "--cluster-method", "kmeans", "--num-clusters", "20"]
    runs = {}
    for seed in (0, 7):
        r = subprocess.run([*base, "--seed", str(seed)], capture_output=True, text=True)
        assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
        out = work / "exp/cluster" / ("kmeans_c20" if seed == 0 else f"kmeans_c20_s{seed}")
        metrics = json.loads((out / "metrics.json").read_text())
        cfg = yaml.safe_load((out / "config.yaml").read_text())
        assert metrics["seed"] == cfg["params"]["random_state"] == seed
        runs[seed] = (out / "labels").read_text()
    assert runs[0] != runs[7]          # k-means++ from another seed: another partition of 768 i-vectors
    assert json.loads((work / "exp/cluster/kmeans_c20/metrics.json").read_text())["seed"] == 0
