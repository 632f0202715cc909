"""Stages 6-10 of run.sh on the demo corpus (stages 0-5 run by the ``demo_ivectors`` fixture): k-means
pseudo labels, a small ECAPA trained on them and on the true labels (the supervised reference) with the
head and mixup chosen on the command line, embeddings, cosine and AS-norm scoring, and the stage-10
report."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import kaldiio
import numpy as np

EMBED_OPTS = ("train.epochs=3 model.channels=32 model.se_dim=16 model.att_dim=16 model.mfa_dim=96 "
              "features.chunk_frames=100 train.num_workers=0 augment.aug_prob=0.3")


def kmeans_am_imix(work: Path, root: Path, *extra: str) -> list[str]:
    """run.sh stages 6-9 on the demo work dir: k-means labels, the tiny network with AM and i-mix 0.5."""
    return [str(root / "run.sh"), "--corpus", "demo", "--corpus-dir", str(work / "corpus"),
            "--data", str(work / "data"), "--exp", str(work / "exp"), "--mfcc-dir", str(work / "mfcc"),
            "--stage", "6", "--stop-stage", "9", "--cluster-method", "kmeans", "--nj", "2",
            "--embed-head", "am", "--embed-mixup", "imix", "--embed-mixup-alpha", "0.5",
            "--embed-opts", EMBED_OPTS, "--top-n", "20", *extra]


def test_run_sh_stages_6_to_10(demo_ivectors: Path, root: Path) -> None:
    work = demo_ivectors
    cmd = kmeans_am_imix(work, root, "--supervised", "true")
    r = subprocess.run(cmd, capture_output=True, text=True)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    results = {}
    for labels in ("kmeans_c48", "supervised"):
        sysdir = work / f"exp/embed/{labels}_ecapa_xs_am_imix0.5"
        cfg = (sysdir / "config.yaml").read_text()
        assert "name: am" in cfg and "kind: imix" in cfg and "alpha: 0.5" in cfg
        log = (sysdir / "train_log.tsv").read_text().splitlines()
        assert len(log) == 4 and log[0].startswith("epoch\t")
        res = json.loads((sysdir / "scores/result.json").read_text())
        assert res["cohort"]["kind"] == "speaker_means" and res["top_n"] == 20
        assert res["cosine"]["num_trials"] == res["asnorm"]["num_trials"] > 10000
        results[labels] = res
        for s, n in (("demo_train", 768), ("demo_test", 192)):
            emb = dict(kaldiio.load_scp(str(sysdir / f"emb_{s}/xvector.scp")))
            assert len(emb) == n and all(v.shape == (192,) and np.isfinite(v).all() for v in emb.values())
        assert f"{labels}_ecapa_xs_am_imix0.5 cosine: EER" in r.stdout
    # 3 epochs of a 0.3 M network: far from converged, but the true labels must already beat chance
    assert results["supervised"]["cosine"]["eer"] < 40.0
    # the cohort of the pseudo-label system is its 48 clusters (k-means keeps them all)
    assert results["kmeans_c48"]["cohort"]["size"] == 48
    # an unchanged rerun trains nothing and rescores nothing
    r2 = subprocess.run([*cmd, "--stage", "8"], capture_output=True, text=True)
    assert r2.returncode == 0 and r2.stdout.count("is up to date") >= 6, r2.stdout[-3000:]
    # a lost final.pt is rebuilt from the checkpoints (no epoch is trained again)
    final = work / "exp/embed/kmeans_c48_ecapa_xs_am_imix0.5/final.pt"
    final.unlink()
    r3 = subprocess.run([*cmd, "--stage", "8", "--stop-stage", "8"], capture_output=True, text=True)
    assert r3.returncode == 0 and final.is_file(), r3.stdout[-3000:] + r3.stderr[-3000:]
    assert "final.pt = epoch" in r3.stdout and "last train_embedding: epoch" not in r3.stdout
    # stage 10: the report holds the same numbers as the result files
    r4 = subprocess.run([*cmd, "--stage", "10", "--stop-stage", "10"], capture_output=True, text=True)
    assert r4.returncode == 0, r4.stdout[-3000:] + r4.stderr[-3000:]
    report = (work / "exp/report/RESULTS.md").read_text()
    for labels, res in results.items():
        row = next(x for x in report.splitlines() if x.startswith(f"| {labels}_ecapa_xs_am_imix0.5 |"))
        c, a = res["cosine"], res["asnorm"]
        assert row.endswith(f"| {c['eer']:.2f} | {c['min_dcf_0.01']:.3f} | {a['eer']:.2f} | "
                            f"{a['min_dcf_0.01']:.3f} |"), row
    assert "| ivector cosine |" in report
    assert "Fewer than 3 scored pseudo-label systems with the am head" in report   # one k-means system


SSL_TINY = """model: {channels: 32, se_dim: 16, att_dim: 16, mfa_dim: 96, embed_dim: 32}
head: {name: ntxent, temperature: 0.1}
mixup: {kind: none}
features: {mfcc_config: conf/mfcc_embed.conf, chunk_frames: 100, use_vad: true}
augment: {aug_prob: 0.5, spec_aug: true}
optim: {name: adam, lr: 0.002, final_lr: 0.0005, warmup_epochs: 0, ref_batch: 32, weight_decay: 0.0}
train: {epochs: 2, batch_size: 32, num_workers: 0, val_fraction: 0.0}
"""


def test_run_sh_ssl_only(demo_ivectors: Path, root: Path, tmp_path: Path) -> None:
    """--ssl only: stage 7 writes the instance-label data dir (every utterance its own speaker), stage 8
    trains the label-free NT-Xent-AM network under a name that carries its variant, stage 9 scores it
    with a cohort of training utterances, and no clustering system is made."""
    work = demo_ivectors
    conf = tmp_path / "simclr_tiny.yaml"
    conf.write_text(SSL_TINY)
    cmd = [str(root / "run.sh"), "--corpus", "demo", "--corpus-dir", str(work / "corpus"),
           "--data", str(work / "data"), "--exp", str(work / "exp"), "--mfcc-dir", str(work / "mfcc"),
           "--stage", "7", "--stop-stage", "9", "--nj", "2", "--ssl", "only", "--ssl-config", str(conf),
           "--ssl-opts", "head.margin=0.2", "--top-n", "20", "--cluster-method", "no_such_method"]
    r = subprocess.run(cmd, capture_output=True, text=True)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    ssl_data = work / "data/demo_train_ssl"
    rows = [ln.split() for ln in (ssl_data / "utt2spk").read_text().splitlines()]
    assert len(rows) == 768 and len({s for _, s in rows}) == 768
    sysdir = work / "exp/embed/ssl_simclr_tiny_ntxent_am0.2"
    assert json.loads((sysdir / "system.json").read_text())["labels"] == "ssl"
    res = json.loads((sysdir / "scores/result.json").read_text())
    assert res["cohort"]["size"] == 768 and res["cosine"]["num_trials"] > 10000
    assert "margin: 0.2" in (sysdir / "config.yaml").read_text()
    assert not list((work / "data").glob("*no_such*")) and not list((work / "exp").glob("cluster/no_such*"))
    bad = subprocess.run([*cmd[:-2], "--ssl", "yes"], capture_output=True, text=True)
    assert bad.returncode == 1 and "--ssl must be none, also or only" in bad.stderr


def test_run_sh_round_2_resumes_after_a_kill(demo_ivectors: Path, root: Path, tmp_path: Path) -> None:
    """--rounds 2: round 2 clusters the training embeddings of round 1's network into kmeans_c48_r2 and
    trains its own network on data/demo_train_pl_kmeans_c48_r2. Killed (SIGKILL to the process group)
    once round 2's network has a checkpoint, the rerun redoes nothing of round 1 and resumes round 2's
    training from that checkpoint; the report's rounds table reads the chain back."""
    work = demo_ivectors
    cmd = kmeans_am_imix(work, root, "--rounds", "2")
    net1 = work / "exp/embed/kmeans_c48_ecapa_xs_am_imix0.5"
    net2 = work / "exp/embed/kmeans_c48_r2_ecapa_xs_am_imix0.5"
    with open(tmp_path / "killed.log", "w") as out:
        p = subprocess.Popen(cmd, start_new_session=True, stdout=out, stderr=subprocess.STDOUT)
        deadline = time.time() + 1200
        while time.time() < deadline and p.poll() is None and not (net2 / "ckpt/ep001.pt").is_file():
            time.sleep(0.5)
        os.killpg(p.pid, signal.SIGKILL)
        p.wait()
    assert (net2 / "ckpt/ep001.pt").is_file(), (tmp_path / "killed.log").read_text()[-3000:]
    assert not (net2 / "final.pt").exists()
    r = subprocess.run(cmd, capture_output=True, text=True)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    assert "round 2 of 2" in r.stdout
    # round 1: clustering, labels, network, embeddings and scores all up to date
    before = r.stdout.split("round 2 of 2")[0]
    assert before.count("is up to date") >= 5 and "train_embedding.sh: training on" not in before, before
    train_log = (net2 / "log/train.log").read_text()
    assert "resuming from" in train_log and "ep00" in train_log.split("resuming from")[1].splitlines()[0]
    rows = (net2 / "train_log.tsv").read_text().splitlines()
    assert [x.split("\t")[0] for x in rows[1:]] == ["1", "2", "3"]
    m2 = json.loads((work / "exp/cluster/kmeans_c48_r2/metrics.json").read_text())
    assert m2["vectors"] == f"{net1}/emb_demo_train/xvector.scp" and m2["views"] is None
    assert m2["num_vectors"] == 768 and m2["n_clusters_requested"] == 48
    pl = work / "data/demo_train_pl_kmeans_c48_r2"
    labels = json.loads((pl / "pseudo_labels.json").read_text())["labels"]
    assert labels.endswith("cluster/kmeans_c48_r2/labels")
    assert json.loads((net2 / "system.json").read_text())["labels"] == "kmeans_c48_r2"
    res = json.loads((net2 / "scores/result.json").read_text())
    assert res["cosine"]["num_trials"] > 10000
    rep = subprocess.run([*cmd, "--stage", "10", "--stop-stage", "10", "--report-dir", str(tmp_path / "rep")],
                         capture_output=True, text=True)
    assert rep.returncode == 0, rep.stdout[-3000:] + rep.stderr[-3000:]
    head = "| kmeans_c48_r2 | 2 | network kmeans_c48_ecapa_xs_am_imix0.5 | kmeans | 48 |"
    row = next(x for x in (tmp_path / "rep/RESULTS.md").read_text().splitlines() if x.startswith(head))
    assert row.endswith(f"| {res['cosine']['eer']:.2f} | {res['asnorm']['eer']:.2f} |"), row
    # bad options fail before any work
    for bad, msg in ((["--rounds", "0"], "--rounds must be an integer >= 1"),
                     (["--cluster-input", str(tmp_path)], "needs --cluster-tag"),
                     (["--ssl", "only"], "--ssl only makes no pseudo labels")):
        b = subprocess.run([*cmd, *bad], capture_output=True, text=True)
        assert b.returncode == 1 and msg in b.stderr, b.stderr
