"""Study grids (sslsv.study, local/run_study.sh): cells are the union of the grids' products, named as
run.sh names them, checked before anything runs; the driver skips finished cells."""

from __future__ import annotations

import re
import shlex
import subprocess
from pathlib import Path

import pytest
from sslsv.study import load_study
from sslsv.tables import DataError


def _write(tmp_path: Path, text: str) -> Path:
    f = tmp_path / "s.yaml"
    f.write_text(text)
    return f


def test_cells_and_run_options(root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    f = _write(tmp_path, """
embed_config: conf/embed/ecapa_xs.yaml
embed_opts: train.epochs=3
grids:
  - name: a
    methods: [kmeans, camsat]
    multipliers: [1, 2]
    input_norms: [config, standard]
  - name: b
    methods: [kmeans]
    heads: [aam, adaface]
    mixups: [none, lmix]
    supervised: false
""")
    monkeypatch.chdir(root)
    st = load_study(f)
    # grid a: 2 methods x 2 C x 2 norms = 8; grid b: 4, of which kmeans/aam/none/C=1x is already in a
    assert len(st.cells) == 8 + 3
    plan = dict(st.planned(10))
    assert list(plan)[:4] == ["kmeans_c10_aam_none", "kmeans_standard_c10_aam_none", "kmeans_c20_aam_none",
                              "kmeans_standard_c20_aam_none"]
    opts = plan["kmeans_standard_c20_aam_none"]
    assert opts[opts.index("--cluster-tag") + 1] == "kmeans_standard_c20"
    assert opts[opts.index("--num-clusters") + 1] == "20"
    assert opts[opts.index("--cluster-opts") + 1] == "input_norm=standard"
    assert opts[opts.index("--embed-opts") + 1] == "train.epochs=3"
    # the true-label reference rides on the first cell of each (head, regulariser) its grid wants
    sup = [cid for cid, o in plan.items() if o[o.index("--supervised") + 1] == "true"]
    assert sup == ["kmeans_c10_aam_none"] and st.references() == [("aam", "none")]
    assert "kmeans_c10_adaface_lmix" in plan and "camsat_c10_aam_none" in plan


@pytest.mark.parametrize("text, message", [
    ("grids:\n  - methods: [nosuch]\n", "no clustering method 'nosuch'"),
    ("grids:\n  - methods: [hdbscan]\n", "chooses its own number of clusters"),
    ("grids:\n  - methods: [kmeans]\n    heads: [arcface]\n", "heads ['arcface'] not in"),
    ("grids:\n  - methods: [kmeans]\n    mixup: [imix]\n", "unknown key(s) ['mixup']"),
    ("grids:\n  - methods: [kmeans]\n    multipliers: [0]\n", "multipliers must be positive"),
    ("grid: []\n", "unknown key(s) ['grid']"),
    ("grids: []\n", "'grids' must be a non-empty list"),
    ("grids:\n  - methods: kmeans\n", "'methods' must be a non-empty list"),
])
def test_bad_study_files(root: Path, tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(DataError, match=re.escape(message)) as e:
        load_study(_write(tmp_path, text), root / "conf/cluster")
    assert str(e.value).startswith(str(tmp_path / "s.yaml"))


def test_shipped_studies_load(root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(root)
    files = sorted((root / "conf/study").glob("*.yaml"))
    assert len(files) >= 3
    for f in files:
        assert load_study(f).cells, f


def test_run_study_dry_run_skips_done_cells(root: Path, recipe_env: dict[str, str], tmp_path: Path) -> None:
    data = tmp_path / "data/demo_train"
    data.mkdir(parents=True)
    (data / "spk2utt").write_text("".join(f"s{i} u{i}\n" for i in range(48)))
    exp = tmp_path / "exp"
    args = [str(root / "local/run_study.sh"), "--prepare", "false", "--dry-run", "true",
            "conf/study/demo.yaml", "--data", str(tmp_path / "data"), "--exp", str(exp)]
    plan = subprocess.run(["study.py", "--num-speakers", "48", "conf/study/demo.yaml"], env=recipe_env,
                          capture_output=True, text=True, check=True, cwd=root).stdout.splitlines()
    n = len(plan)
    r = subprocess.run(args, env=recipe_env, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert f"(48 training speakers): {n} cells" in r.stdout
    line = next(x for x in r.stdout.splitlines() if "kmeans_standard_c48_aam_none: ./run.sh" in x)
    assert "--cluster-opts input_norm=standard" in line and "--cluster-tag kmeans_standard_c48" in line
    # a finished cell (same options) is skipped; changed options run it again
    cid, opts = plan[0].split(" ", 1)
    assert shlex.split(opts)[:2] == ["--cluster-method", "kmeans"]
    (exp / "study/demo").mkdir(parents=True, exist_ok=True)
    (exp / f"study/demo/{cid}.done").write_text(opts + "\n")
    r = subprocess.run(args, env=recipe_env, capture_output=True, text=True)
    assert f"[1/{n}] {cid} is done" in r.stdout
    (exp / f"study/demo/{cid}.done").write_text("--other options\n")
    r = subprocess.run(args, env=recipe_env, capture_output=True, text=True)
    assert f"[1/{n}] {cid}: ./run.sh" in r.stdout
    bad = subprocess.run([str(root / "local/run_study.sh"), "--prepare", "false", "conf/study/demo.yaml",
                          "--data", str(tmp_path / "nodata")], env=recipe_env, capture_output=True, text=True)
    assert bad.returncode != 0 and "spk2utt" in bad.stderr
