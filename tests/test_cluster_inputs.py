"""Reading and normalising the vectors to cluster, aligning augmented views, and the registry's config
checks."""

from __future__ import annotations

from pathlib import Path

import kaldiio
import numpy as np
import pytest
from sslsv.cluster import build, estimators
from sslsv.cluster.inputs import align_views, normalize, read_vectors, read_views
from sslsv.tables import DataError


def _write_scp(tmp: Path, keys: list[str], x: np.ndarray, name: str = "ivector") -> Path:
    with kaldiio.WriteHelper(f"ark,scp:{tmp / name}.ark,{tmp / name}.scp") as w:
        for k, v in zip(keys, x, strict=True):
            w(k, v.astype(np.float32))
    return tmp / f"{name}.scp"


def test_read_vectors_scp_ark_npy_dir(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    keys = [f"u{i}" for i in range(5)]
    x = rng.standard_normal((5, 3))
    scp = _write_scp(tmp_path, keys, x)
    for src in (scp, tmp_path / "ivector.ark", tmp_path):
        k, v = read_vectors(src)
        assert k == keys and np.allclose(v, x, atol=1e-6)
    np.save(tmp_path / "m.npy", x)
    k, v = read_vectors(tmp_path / "m.npy")
    assert k == ["0", "1", "2", "3", "4"] and np.array_equal(v, x)
    (tmp_path / "m.keys").write_text("\n".join(keys))
    assert read_vectors(tmp_path / "m.npy")[0] == keys
    (tmp_path / "m.keys").write_text("a b")
    with pytest.raises(DataError, match="2 keys for 5 rows"):
        read_vectors(tmp_path / "m.npy")
    with pytest.raises(DataError, match="no such file"):
        read_vectors(tmp_path / "nothing.scp")


def test_normalize() -> None:
    rng = np.random.default_rng(1)
    x = rng.standard_normal((50, 4)) * [1, 2, 3, 4] + 5
    assert np.allclose(np.linalg.norm(normalize(x, "l2"), axis=1), 1, atol=1e-6)
    s = normalize(x, "standard")
    assert np.allclose(s.mean(0), 0, atol=1e-5) and np.allclose(s.std(0), 1, atol=1e-5)
    from sklearn.preprocessing import StandardScaler
    assert np.allclose(s, StandardScaler().fit_transform(x), atol=1e-5)
    assert np.allclose(normalize(x, "none"), x, atol=1e-5) and normalize(x, "none").dtype == np.float32
    with pytest.raises(DataError):
        normalize(x, "zca")


def test_align_views_by_name_and_utt2uniq(tmp_path: Path) -> None:
    keys = ["a-1", "b-2", "c-3"]
    vkeys = ["a-1-noise", "a-1-reverb", "c-3-noise", "zz-noise"]
    vx = np.arange(4 * 2, dtype=float).reshape(4, 2)
    types, views, present = align_views(keys, vkeys, vx)
    assert types == ["noise", "reverb"]
    assert np.array_equal(present, [[True, False, True], [True, False, False]])
    assert np.array_equal(views[0, 0], vx[0]) and np.array_equal(views[1, 0], vx[1])
    assert np.array_equal(views[0, 2], vx[2])
    # utt2uniq decides ownership; a key not extending its owner is ignored.
    types, _, present = align_views(keys, vkeys, vx, {"a-1-noise": "b-2", "c-3-noise": "c-3"})
    assert present[types.index("noise")].tolist() == [False, False, True]
    # read_views: missing copies stand in as the clean vector, standardised with the clean statistics.
    x = np.random.default_rng(2).standard_normal((3, 2))
    _write_scp(tmp_path, ["a-1-noise", "c-3-noise"], x[[0, 2]] + 0.5, name="aug")
    types, v, present = read_views(keys, x, tmp_path / "aug.scp", how="standard")
    clean = normalize(x, "standard")
    assert np.allclose(v[0, 1], clean[1]) and not present[0, 1]
    assert np.allclose(v[0, 0], clean[0] + 0.5 / x.std(0), atol=1e-5)


def test_registry_errors(tmp_path: Path) -> None:
    assert {"kmeans", "deep_im", "hdbscan", "dec", "agglomerative"} <= set(estimators())
    cfg = tmp_path / "m.yaml"
    cfg.write_text("estimator: kmeans\nparams:\n  n_clusters: 5\n  n_clusterz: 3\n")
    with pytest.raises(DataError, match="n_clusterz"):
        build(cfg)
    cfg.write_text("estimator: kmeanz\n")
    with pytest.raises(DataError, match="unknown clustering estimator 'kmeanz'"):
        build(cfg)
    cfg.write_text("estimator: kmeans\ninput_norm: zca\n")
    with pytest.raises(DataError, match="input_norm"):
        build(cfg)
    cfg.write_text("estimator: kmeans\nparams:\n  n_clusters: 5\n")
    est, settings = build(cfg, ["n_init=3", "input_norm=standard"], n_clusters=9)
    assert (est.n_clusters, est.n_init, settings["input_norm"]) == (9, 3, "standard")
    cfg.write_text("estimator: hdbscan\n")
    with pytest.raises(DataError, match="finds the number of clusters"):
        build(cfg, n_clusters=9)


@pytest.mark.parametrize(("args", "message"), [
    (["--num-clusters", "-3"], "--num-clusters must be an integer >= 2, got '-3'"),
    (["--num-clusters", "0"], "--num-clusters must be an integer >= 2, got '0'"),
    (["--num-clusters", "1"], "--num-clusters must be an integer >= 2, got '1'"),
    (["--num-clusters", "ten"], "--num-clusters must be an integer >= 2, got 'ten'"),
    (["--num-clusters", "31"], "--num-clusters 31 is more than the 30 vectors of"),
    (["--num-clusters", "3", "--set-opts", "n_init=ten"],
     "override 'n_init=ten': expected an integer (like the default"),
    (["--method", "imsat", "--num-clusters", "3", "--set-opts", "verbose=maybe"],
     "override 'verbose=maybe': expected true or false (like the default true), got 'maybe'"),
])
def test_bad_cluster_options_fail_before_anything_is_written(tmp_path: Path, root: Path,
                                                             recipe_env: dict[str, str], args: list[str],
                                                             message: str) -> None:
    """Bad values stop steps/cluster.sh with one line naming the value, and leave no output dir behind
    (before, C <= 0 or C > N ended in a scikit-learn traceback after the dir was made)."""
    import subprocess

    keys = [f"u{i:02d}" for i in range(30)]
    scp = _write_scp(tmp_path, keys, np.random.default_rng(0).normal(size=(30, 4)))
    out = tmp_path / "out"
    r = subprocess.run([str(root / "steps/cluster.sh"), *args, scp, out], capture_output=True, text=True,
                       env=recipe_env)
    assert r.returncode != 0 and message in r.stderr, r.stderr
    assert "Traceback" not in r.stderr
    assert not (out / "labels").exists() and not (out / "config.yaml").exists()
    if "set-opts" not in " ".join(args):
        assert not out.exists()


def test_cluster_py_checks_the_count_against_the_vectors_and_the_device(tmp_path: Path, root: Path,
                                                                        recipe_env: dict[str, str]) -> None:
    """cluster.py itself (any vector format) refuses C > N and a CUDA device the machine lacks, before its
    output dir exists."""
    import subprocess

    import torch

    np.save(tmp_path / "v.npy", np.random.default_rng(0).normal(size=(20, 4)).astype(np.float32))
    cases = [(["--method", "kmeans", "--num-clusters", "21"],
              "the number of clusters must be an integer from 2 to the number of vectors (20), got 21")]
    if not torch.cuda.is_available():
        cases.append((["--method", "imsat", "--num-clusters", "3", "--device", "cuda"],
                      "cluster.py: ERROR: --device cuda: CUDA is not available"))
    cases.append((["--method", "imsat", "--num-clusters", "3", "--device", "gpu"],
                  "--device 'gpu': expected auto, cpu, cuda or cuda:N"))
    for args, message in cases:
        r = subprocess.run(["python3", str(root / "pyscripts/cluster.py"), *args, tmp_path / "v.npy",
                            tmp_path / "out"], capture_output=True, text=True, env=recipe_env)
        assert r.returncode == 1 and message in r.stderr and "Traceback" not in r.stderr, r.stderr
        assert not (tmp_path / "out").exists()
