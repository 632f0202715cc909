"""sslsv.naming, the one owner of C, pseudo-label set names and network names: known answers, the
shell command run.sh and the sweep call, the system.json stage 8 writes, and the report reading it
instead of parsing a directory name."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from sslsv.embed.config import load_embed_config
from sslsv.naming import SUPERVISED, cluster_tag, labels_of, num_clusters, write_system_record
from sslsv.report.collect import collect
from sslsv.study import Cell

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize(("args", "tag"), [
    (("kmeans", 48), "kmeans_c48"),
    (("kmeans", 96, "standard"), "kmeans_standard_c96"),
    (("camsat", 100, "", 3), "camsat_c100_s3"),
    (("hdbscan", None, "", 0), "hdbscan"),
    (("hdbscan", None, "", 2), "hdbscan_s2"),
    (("kmeans", 48, "", 0, "", 2), "kmeans_c48_r2"),          # run.sh --rounds: round 1 keeps its name
    (("cimc", 100, "", 1, "", 3), "cimc_c100_r3_s1"),
    (("kmeans", 48, "", 0, "ssl", 1), "kmeans_c48_ssl"),      # --cluster-input ssl
    (("kmeans", 48, "", 0, "ssl", 2), "kmeans_c48_ssl_r2"),
])
def test_cluster_tag(args: tuple, tag: str) -> None:
    assert cluster_tag(*args) == tag


def test_num_clusters_and_the_study_agree() -> None:
    assert [num_clusters(m, 48) for m in (0.01, 0.5, 1, 2, 4, 2.5)] == [2, 24, 48, 96, 192, 120]
    cell = Cell("g", "kmeans", 2.0, "standard", True, "aam", "none", False)
    assert cell.num_clusters(48) == 96 and cell.cluster_tag(48) == "kmeans_standard_c96"


def test_shell_command() -> None:
    def run(*a: str) -> str:
        return subprocess.run([sys.executable, "-m", "sslsv.naming", *a], capture_output=True, text=True,
                              check=True).stdout.strip()
    assert run("cluster-tag", "--method", "gmm", "--num-clusters", "200", "--seed", "1") == "gmm_c200_s1"
    assert run("cluster-tag", "--method", "hdbscan") == "hdbscan"
    assert run("num-clusters", "4", "48") == "192"
    assert run("cluster-tag", "--tag", "kmeans_standard_c96") == "kmeans_standard_c96"   # a --cluster-tag
    assert run("cluster-tag", "--tag", "mine", "--seed", "3") == "mine_s3"
    assert run("cluster-tag", "--tag", "mine", "--round", "2", "--seed", "3") == "mine_r2_s3"
    assert run("cluster-tag", "--method", "kmeans", "--num-clusters", "9", "--source", "ssl",
               "--round", "1") == "kmeans_c9_ssl"
    for bad in (["--round", "0"], ["--source", "a/b"]):
        r = subprocess.run([sys.executable, "-m", "sslsv.naming", "cluster-tag", "--method", "kmeans", *bad],
                           capture_output=True, text=True)
        assert r.returncode == 1 and r.stderr.startswith("ERROR: "), r.stderr


def test_system_record_and_the_report_read_it(tmp_path: Path) -> None:
    pl = tmp_path / "data/x_train_pl_renamed_by_hand"
    pl.mkdir(parents=True)
    labels_file = tmp_path / "exp/cluster/gmm_c12/labels"
    (pl / "pseudo_labels.json").write_text(json.dumps({"labels": str(labels_file)}))
    assert labels_of(pl) == "gmm_c12" and labels_of(tmp_path / "data/x_train") == SUPERVISED
    # a network dir whose name follows no convention: the report still knows labels, config and head
    d = tmp_path / "exp/embed/my_favourite_run"
    conf = ROOT / "conf/embed/ecapa_xs.yaml"
    cfg = load_embed_config(conf, ["head.name=adaface", "mixup.kind=lmix", "mixup.alpha=0.5"])
    rec = write_system_record(d, pl, conf, cfg)
    assert rec == {"labels": "gmm_c12", "data": str(pl), "config": "ecapa_xs", "head": "adaface",
                   "mixup": "lmix", "alpha": 0.5}
    (d / "config.yaml").write_text("head:\n  name: aam\n")   # what system.json says wins over guessing
    (d / "scores").mkdir()
    score = {"eer": 12.5, "min_dcf_0.01": 0.8, "num_trials": 10}
    (d / "scores/result.json").write_text(json.dumps({"utt2spk": "elsewhere/utt2spk", "trials": "t",
                                                       "cosine": score, "asnorm": score}))
    (s,) = collect(tmp_path / "exp").systems
    assert (s.name, s.labels, s.config, s.head, s.mixup, s.alpha) == (
        "my_favourite_run", "gmm_c12", "ecapa_xs", "adaface", "lmix", 0.5)
    assert s.cosine.eer == 12.5
