"""EER / minDCF with Kaldi's definitions (docs/ivector.md §8): hand-computed toy sets, literal transcriptions
of compute-eer's loop and compute_min_dcf.py, scikit-learn's ROC; trials/scores IO and the CLIs."""

from __future__ import annotations

import json
import subprocess
import sys
from operator import itemgetter

import numpy as np
import pytest
from sklearn.metrics import roc_curve
from sslsv.scoring import (
    Trials,
    check_trials_keys,
    compute_eer,
    compute_min_dcf,
    evaluate,
    read_scores,
    read_trials,
    summary_line,
    write_result,
    write_scores,
)
from sslsv.tables import DataError

# ----------------------------------------------------------------------------- references, written slowly


def kaldi_compute_eer(target: list[float], nontarget: list[float]) -> tuple[float, float]:
    """compute-eer.cc, ComputeEer(), line by line (float32 scores as BaseFloat)."""
    target_scores = sorted(float(np.float32(s)) for s in target)
    nontarget_scores = sorted(float(np.float32(s)) for s in nontarget)
    target_position = 0
    target_size = len(target_scores)
    while target_position + 1 < target_size:
        nontarget_size = len(nontarget_scores)
        nontarget_n = int(nontarget_size * target_position * 1.0 / target_size)
        nontarget_position = nontarget_size - 1 - nontarget_n
        if nontarget_position < 0:
            nontarget_position = 0
        if nontarget_scores[nontarget_position] < target_scores[target_position]:
            break
        target_position += 1
    threshold = target_scores[target_position]
    eer = target_position * 1.0 / target_size
    return float(np.float32(eer)), threshold


def kaldi_compute_min_dcf(scores: list[float], labels: list[int], p_target: float,
                          c_miss: float = 1.0, c_fa: float = 1.0) -> tuple[float, float]:
    """sid/compute_min_dcf.py: ComputeErrorRates() then ComputeMinDcf(), as written there."""
    sorted_indexes, thresholds = zip(*sorted([(index, threshold) for index, threshold in enumerate(scores)],
                                             key=itemgetter(1)), strict=True)
    labels = [labels[i] for i in sorted_indexes]
    fnrs: list[float] = []
    fprs: list[float] = []
    for i in range(0, len(labels)):
        if i == 0:
            fnrs.append(labels[i])
            fprs.append(1 - labels[i])
        else:
            fnrs.append(fnrs[i - 1] + labels[i])
            fprs.append(fprs[i - 1] + 1 - labels[i])
    fnrs_norm = sum(labels)
    fprs_norm = len(labels) - fnrs_norm
    fnrs = [x / float(fnrs_norm) for x in fnrs]
    fprs = [1 - x / float(fprs_norm) for x in fprs]
    min_c_det = float("inf")
    min_c_det_threshold = thresholds[0]
    for i in range(0, len(fnrs)):
        c_det = c_miss * fnrs[i] * p_target + c_fa * fprs[i] * (1 - p_target)
        if c_det < min_c_det:
            min_c_det = c_det
            min_c_det_threshold = thresholds[i]
    c_def = min(c_miss * p_target, c_fa * (1 - p_target))
    return min_c_det / c_def, min_c_det_threshold


# ----------------------------------------------------------------------------- hand-computed cases


def test_eer_perfect_separation():
    eer, thr = compute_eer([2.0, 3.0, 4.0], [0.0, 1.0])
    assert eer == 0.0 and thr == 2.0
    for pt in (0.01, 0.001, 0.05, 0.5):
        assert compute_min_dcf([0, 1, 2, 3, 4], [0, 0, 1, 1, 1], pt)[0] == 0.0


def test_eer_full_overlap_and_ties():
    # all scores equal: no break in the loop, p runs to Nt - 1
    assert compute_eer([1.0, 1.0], [1.0, 1.0]) == (0.5, 1.0)
    assert compute_eer([5.0] * 10, [5.0] * 7)[0] == pytest.approx(0.9)
    # tar [1,2,3], non [0,2,2]: p=0: non[2]=2 < 1 no; p=1: q=1, 2 < 2 no (tie) -> p=2
    eer, thr = compute_eer([3.0, 1.0, 2.0], [2.0, 0.0, 2.0])
    assert eer == pytest.approx(2 / 3) and thr == 3.0


def test_eer_unequal_counts():
    # Nt=4, Nn=6: p=0: q=5, 3.5<0.5 no; p=1: k=int(6/4)=1, q=4, 2.5<2 no; p=2: k=3, q=2, 1<3 yes
    eer, thr = compute_eer([0.5, 2, 3, 4], [0, 1, 1.5, 2.5, 3.5, -1])
    assert eer == 0.5 and thr == 3.0
    # more targets than nontargets: Nt=5, Nn=2; p=0: q=1, 1.5<0 no; p=1: k=int(2/5)=0, q=1, 1.5<1 no;
    # p=2: k=int(4/5)=0, 1.5<2 yes
    eer, thr = compute_eer([0, 1, 2, 3, 4], [-1, 1.5])
    assert eer == pytest.approx(0.4) and thr == 2.0


def test_min_dcf_hand_computed():
    # p_t = 0.5, c_def = 0.5; costs at i = 0..3: 0.25, 0.5, 0.25, 0.5 -> first minimum at i = 0
    v, thr = compute_min_dcf([0.1, 0.2, 0.3, 0.4], [0, 1, 0, 1], 0.5)
    assert v == 0.5 and thr == 0.1
    # full overlap, p_t = 0.01: costs 0.995, 0.5, 0.505, 0.01 -> 0.01 / 0.01 = 1
    v, thr = compute_min_dcf([1.0] * 4, [1, 0, 1, 0], 0.01)
    assert v == pytest.approx(1.0)
    # ties keep trial order (stable sort): target first -> both rejected costs 1; nontarget first -> 0
    assert compute_min_dcf([1.0, 1.0], [1, 0], 0.5)[0] == 1.0
    assert compute_min_dcf([1.0, 1.0], [0, 1], 0.5)[0] == 0.0
    # c_miss / c_fa enter as in the definition
    v, _ = compute_min_dcf([0.1, 0.2, 0.3, 0.4], [0, 1, 0, 1], 0.5, c_miss=2.0, c_fa=1.0)
    assert v == pytest.approx(min(0.0 + 0.5 * 0.5, 2 * 0.5 * 0.5 + 0.5 * 0.5, 2 * 0.5 * 0.5, 2 * 0.5) / 0.5)


def test_min_dcf_at_most_one():
    rng = np.random.default_rng(3)
    for _ in range(20):
        n = int(rng.integers(2, 200))
        lab = rng.random(n) < 0.3
        lab[:2] = [True, False]
        s = rng.normal(size=n) + rng.normal() * lab
        for pt in (0.01, 0.001, 0.05, 0.3):
            assert compute_min_dcf(s, lab, pt)[0] <= 1.0 + 1e-12


# ----------------------------------------------------------------------------- against the references


@pytest.mark.parametrize("seed", range(12))
def test_against_literal_kaldi(seed):
    rng = np.random.default_rng(seed)
    nt = int(rng.integers(1, 60))
    nn = int(rng.integers(1, 300))
    sep = rng.uniform(-1, 3)
    decimals = int(rng.integers(0, 3))  # coarse rounding produces many ties
    tar = np.round(rng.normal(sep, 1, nt), decimals)
    non = np.round(rng.normal(0, 1, nn), decimals)
    assert compute_eer(tar, non) == kaldi_compute_eer(tar.tolist(), non.tolist())
    scores = np.concatenate([tar, non])
    labels = np.concatenate([np.ones(nt, int), np.zeros(nn, int)])
    perm = rng.permutation(len(scores))
    scores, labels = scores[perm], labels[perm]
    for pt in (0.01, 0.001, 0.05, 0.5):
        for cm, cf in ((1.0, 1.0), (10.0, 1.0)):
            ours = compute_min_dcf(scores, labels, pt, cm, cf)
            ref = kaldi_compute_min_dcf(scores.tolist(), labels.tolist(), pt, cm, cf)
            assert ours[0] == pytest.approx(ref[0], rel=1e-12, abs=1e-15)
            assert ours[1] == ref[1]


def test_against_sklearn_roc():
    rng = np.random.default_rng(7)
    for nt, nn in ((50, 500), (300, 3000), (1000, 700)):
        tar = rng.normal(1.5, 1, nt)
        non = rng.normal(0, 1, nn)
        s = np.concatenate([tar, non])
        y = np.concatenate([np.ones(nt), np.zeros(nn)])
        fpr, tpr, _ = roc_curve(y, s, drop_intermediate=False)
        fnr = 1 - tpr
        i = np.argmin(np.abs(fnr - fpr))
        eer_roc = (fnr[i] + fpr[i]) / 2
        eer, _ = compute_eer(tar, non)
        assert abs(eer - eer_roc) <= 1.0 / nt + 1.0 / nn
        # minDCF = minimum cost over the ROC's operating points (the excluded accept-all point never wins)
        for pt in (0.01, 0.001, 0.05):
            c_def = min(pt, 1 - pt)
            roc_min = np.min(fnr * pt + fpr * (1 - pt)) / c_def
            assert compute_min_dcf(s, y, pt)[0] == pytest.approx(roc_min, abs=1e-12)


def test_empty_classes_rejected():
    with pytest.raises(ValueError):
        compute_eer([], [1.0])
    with pytest.raises(ValueError):
        compute_min_dcf([1.0, 2.0], [1, 1], 0.01)


# ----------------------------------------------------------------------------- IO, evaluate, CLIs


def test_read_trials_and_errors(tmp_path):
    p = tmp_path / "trials"
    p.write_text("a b target\nb c nontarget\n\na c nontarget\n")
    tr = read_trials(p)
    assert list(tr) == [("a", "b", True), ("b", "c", False), ("a", "c", False)]
    assert tr.where(2) == f"{p}:4"
    p.write_text("a b target\nb c maybe\n")
    with pytest.raises(DataError, match=rf"{p}:2: label"):
        read_trials(p)
    p.write_text("a b target\nb c\n")
    with pytest.raises(DataError, match=rf"{p}:2: expected"):
        read_trials(p)
    p.write_text("a b target\na b nontarget\n")
    with pytest.raises(DataError, match=rf"{p}:2: duplicate"):
        read_trials(p)
    p.write_text("a b target\nb c nontarget\n")
    with pytest.raises(DataError, match=rf"{p}:2: utterance 'c' has no vector"):
        check_trials_keys(read_trials(p), {"a", "b"})


def test_evaluate_summary_and_result(tmp_path):
    rng = np.random.default_rng(0)
    utts = [f"u{i}" for i in range(30)]
    spk = {u: i // 5 for i, u in enumerate(utts)}
    lines = [f"{a} {b} {'target' if spk[a] == spk[b] else 'nontarget'}"
             for i, a in enumerate(utts) for b in utts[i + 1:]]
    (tmp_path / "trials").write_text("\n".join(lines) + "\n")
    trials = read_trials(tmp_path / "trials")
    vals = np.array([rng.normal(2.0 if lab else 0.0) for _, _, lab in trials])
    write_scores(tmp_path / "scores", trials, vals)
    scores = read_scores(tmp_path / "scores")
    r = evaluate(trials, scores)
    lab = np.array([t[2] for t in trials])
    s6 = np.array([float(f"{v:.6g}") for v in vals])
    assert r["num_trials"] == len(trials) and r["num_target"] == int(lab.sum())
    assert r["eer"] == pytest.approx(100 * kaldi_compute_eer(s6[lab].tolist(), s6[~lab].tolist())[0])
    for pt in (0.01, 0.001, 0.05):
        ref = kaldi_compute_min_dcf(s6.tolist(), lab.astype(int).tolist(), pt)[0]
        assert r[f"min_dcf_{pt:g}"] == pytest.approx(ref)
    write_result(tmp_path / "result.json", r)
    assert json.loads((tmp_path / "result.json").read_text()) == r
    line = summary_line({"eer": 5.329, "min_dcf_0.01": 0.4933, "min_dcf_0.001": 0.6168, "num_trials": 37720})
    assert line == "EER 5.33 %  minDCF(0.01) 0.4933  minDCF(0.001) 0.6168  (37720 trials)"
    # a trial without a score names the trials file and line
    del scores[trials[7][0], trials[7][1]]
    with pytest.raises(DataError, match=rf"{tmp_path / 'trials'}:8: no score"):
        evaluate(trials, scores)
    with pytest.raises(DataError, match="trial 2: no score"):
        evaluate([("a", "b", True), ("x", "y", False)], {("a", "b"): 1.0})
    tr = Trials([("a", "b", True), ("x", "y", False)], "T", [3, 9])
    with pytest.raises(DataError, match="T:9: no score"):
        evaluate(tr, {("a", "b"): 1.0})


def test_clis(tmp_path, recipe_env, root):
    (tmp_path / "trials").write_text("a b target\na c nontarget\nb c nontarget\nc d target\nb d nontarget\n")
    (tmp_path / "scores").write_text("a b 3.5\na c 1.25\nb c -2\nc d 0.5\nb d 1\n")
    run = lambda *a: subprocess.run([sys.executable, *a], env=recipe_env, capture_output=True, text=True,  # noqa: E731
                                    cwd=root)
    out = run("pyscripts/compute_min_dcf.py", "--p-target", "0.05", str(tmp_path / "scores"),
              str(tmp_path / "trials"))
    assert out.returncode == 0, out.stderr
    ref = kaldi_compute_min_dcf([3.5, 1.25, -2, 0.5, 1], [1, 0, 0, 1, 0], 0.05)[0]
    assert out.stdout.strip() == f"{ref:.4f}"
    (tmp_path / "eer_in").write_text("3.5 target\n1.25 nontarget\n-2 nontarget\n0.5 target\n1 nontarget\n")
    out = run("pyscripts/compute_eer.py", str(tmp_path / "eer_in"))
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == f"{100 * kaldi_compute_eer([3.5, 0.5], [1.25, -2, 1])[0]:.4g}"
    out2 = run("pyscripts/compute_eer.py", "--trials", str(tmp_path / "trials"),
               "--scores", str(tmp_path / "scores"))
    assert out2.stdout == out.stdout
    out = run("pyscripts/score_trials.py", "evaluate", "--result", str(tmp_path / "r.json"),
              str(tmp_path / "trials"), str(tmp_path / "scores"))
    assert out.returncode == 0 and out.stdout.startswith("EER ")
    # a score whose trial is unknown is an error, as in Kaldi's script
    (tmp_path / "scores").write_text("a b 3.5\nx y 1\n")
    out = run("pyscripts/compute_min_dcf.py", str(tmp_path / "scores"), str(tmp_path / "trials"))
    assert out.returncode == 1 and "no trial x y" in out.stderr
    out = run("pyscripts/compute_eer.py", "--trials", str(tmp_path / "trials"),
              "--scores", str(tmp_path / "scores"))
    assert out.returncode == 1 and "no trial x y" in out.stderr
