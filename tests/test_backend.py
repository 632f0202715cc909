"""Back end (docs/ivector.md §7): LDA, length norm, PLDA EM / transform / smoothing / LLR, invariances, the
step scripts end to end on synthetic speakers and on MFCC statistics of real speech."""

from __future__ import annotations

import json
import math
import subprocess

import kaldiio
import numpy as np
import pytest
import scipy.linalg
from scipy.stats import multivariate_normal
from sslsv.backend import (
    Lda,
    Plda,
    cosine_scores,
    global_mean,
    length_norm,
    read_kaldi_matrix,
    read_kaldi_vector,
    score_pairs,
)
from sslsv.scoring import compute_eer
from sslsv.tables import DataError, read_vector_scp


def two_cov_data(rng, num_spk, per_spk, between, within, mean=None):
    """Vectors from x = m + y_s + e, y_s ~ N(0, between), e ~ N(0, within); ``per_spk`` int or array."""
    d = between.shape[0]
    counts = np.full(num_spk, per_spk) if np.isscalar(per_spk) else np.asarray(per_spk)
    spk = np.repeat(np.arange(num_spk), counts)
    y = rng.multivariate_normal(np.zeros(d), between, num_spk)
    x = y[spk] + rng.multivariate_normal(np.zeros(d), within, len(spk))
    if mean is not None:
        x = x + mean
    return x, spk.astype(str)


def random_spd(rng, d, scale=1.0):
    a = rng.normal(size=(d, d))
    return scale * (a @ a.T / d + 0.2 * np.eye(d))


# ----------------------------------------------------------------------------- LDA, length norm


def test_lda_properties_vs_scipy():
    rng = np.random.default_rng(0)
    d, k = 8, 40
    x, spk = two_cov_data(rng, k, rng.integers(2, 7, k), random_spd(rng, d, 2.0), random_spd(rng, d),
                          mean=rng.normal(size=d) * 3)
    lda = Lda().fit(x, spk, 5)
    a, b = lda.matrix[:, :-1], lda.matrix[:, -1]
    mu = x.mean(0)
    np.testing.assert_allclose(b, -a @ mu, atol=1e-12)
    # class statistics computed directly
    xc = x - mu
    tot = xc.T @ xc / len(x)
    sw = np.zeros((d, d))
    for s in np.unique(spk):
        xs = xc[spk == s]
        sw += (xs - xs.mean(0)).T @ (xs - xs.mean(0))
    sw /= len(x)
    sb = tot - sw
    np.testing.assert_allclose(a @ sw @ a.T, np.eye(5), atol=1e-10)
    proj = a @ sb @ a.T
    np.testing.assert_allclose(proj, np.diag(np.diag(proj)), atol=1e-10)
    assert np.all(np.diff(np.diag(proj)) <= 1e-12)
    # generalized symmetric eigenproblem Σ_b v = λ Σ_w v (scipy normalises vᵀ Σ_w v = 1)
    lam, v = scipy.linalg.eigh(sb, sw)
    lam, v = lam[::-1], v[:, ::-1]
    np.testing.assert_allclose(np.diag(proj), lam[:5], rtol=1e-9)
    np.testing.assert_allclose(np.abs(a), np.abs(v[:, :5].T), rtol=1e-6, atol=1e-9)
    np.testing.assert_allclose(lda.transform(x), x @ a.T + b, atol=1e-12)


def test_lda_kaldi_text_roundtrip(tmp_path):
    rng = np.random.default_rng(1)
    x, spk = two_cov_data(rng, 20, 4, np.eye(5) * 2, np.eye(5))
    lda = Lda().fit(x, spk, 3)
    lda.write_kaldi(tmp_path / "transform.mat")
    text = (tmp_path / "transform.mat").read_text()
    assert text.startswith(" [\n") and text.rstrip().endswith("]") and len(text.splitlines()) == 4
    np.testing.assert_array_equal(Lda.load(tmp_path / "transform.mat").matrix, lda.matrix)
    lda.save(tmp_path / "lda.npz")
    np.testing.assert_array_equal(Lda.load(tmp_path / "lda.npz").matrix, lda.matrix)
    # a Kaldi binary matrix (as ivector-compute-lda writes by default) through kaldiio
    kaldiio.save_mat(str(tmp_path / "bin.mat"), lda.matrix.astype(np.float32))
    np.testing.assert_allclose(Lda.load(tmp_path / "bin.mat").matrix, lda.matrix, rtol=1e-6, atol=1e-7)
    # a purely linear (d x S) matrix
    lin = Lda(lda.matrix[:, :-1])
    np.testing.assert_allclose(lin.transform(x), x @ lda.matrix[:, :-1].T)
    with pytest.raises(DataError):
        Lda().fit(x[:20:4], spk[:20:4], 2)  # one utterance per speaker


def test_length_norm_exact():
    rng = np.random.default_rng(2)
    x = rng.normal(size=(50, 7)) * rng.uniform(0.1, 10, (50, 1))
    x[3] = 0.0
    y = length_norm(x)
    n = np.linalg.norm(y, axis=1)
    np.testing.assert_allclose(np.delete(n, 3), math.sqrt(7), rtol=1e-15)
    assert np.all(y[3] == 0)
    np.testing.assert_allclose(np.delete(np.linalg.norm(length_norm(x, scaleup=False), axis=1), 3), 1.0,
                               rtol=1e-15)
    # direction kept
    np.testing.assert_allclose(y[0] / np.linalg.norm(y[0]), x[0] / np.linalg.norm(x[0]))


# ----------------------------------------------------------------------------- PLDA


@pytest.fixture(scope="module")
def plda_model():
    rng = np.random.default_rng(4)
    d, k = 6, 120
    counts = rng.integers(1, 9, k)  # includes single-utterance speakers
    x, spk = two_cov_data(rng, k, counts, random_spd(rng, d, 3.0), random_spd(rng, d), rng.normal(size=d))
    return Plda().fit(x, spk, num_iters=10), x, spk


def test_plda_em_objective_and_transform(plda_model):
    p, x, spk = plda_model
    obj = np.array(p.objective)
    assert len(obj) == 11
    assert np.all(np.diff(obj) >= -1e-10), obj
    assert obj[-1] > obj[0] + 0.1
    t = p.transform_
    np.testing.assert_allclose(t @ p.within @ t.T, np.eye(p.dim), atol=1e-10)
    np.testing.assert_allclose(t @ p.between @ t.T, np.diag(p.psi), atol=1e-10)
    assert np.all(p.psi >= 0) and np.all(np.diff(p.psi) <= 0)
    # m is the mean of the speaker means, not of the utterances
    means = np.array([x[spk == s].mean(0) for s in np.unique(spk)])
    np.testing.assert_allclose(p.mean, means.mean(0), atol=1e-12)
    assert np.abs(p.mean - x.mean(0)).max() > 1e-3
    np.testing.assert_allclose(p.offset, -t @ p.mean, atol=1e-12)


def test_plda_em_matches_unvectorised_reference(plda_model):
    """One EM iteration written per speaker, as Kaldi's PldaEstimator loops."""
    p, x, spk = plda_model
    d = x.shape[1]
    q = Plda().fit(x, spk, num_iters=1)
    groups = [x[spk == s] for s in np.unique(spk)]
    m = np.mean([g.mean(0) for g in groups], axis=0)
    b_inv, w_inv = np.eye(d), np.eye(d)
    bstat, wstat = np.zeros((d, d)), np.zeros((d, d))
    for g in groups:
        n = len(g)
        wstat += (g - g.mean(0)).T @ (g - g.mean(0))
        mixed = np.linalg.inv(b_inv + n * w_inv)
        mt = g.mean(0) - m
        w = mixed @ (n * w_inv @ mt)
        bstat += mixed + np.outer(w, w)
        wstat += n * (mixed + np.outer(mt - w, mt - w))
    np.testing.assert_allclose(q.within, wstat / len(x), atol=1e-12)
    np.testing.assert_allclose(q.between, bstat / len(groups), atol=1e-12)


def test_plda_llr_symmetric_and_equals_joint_gaussian(plda_model):
    p = plda_model[0]
    rng = np.random.default_rng(5)
    psi = np.diag(p.psi)
    d = p.dim
    a, b = rng.normal(size=(2, 10, d)) * 1.5
    np.testing.assert_allclose(p.llr(a, b), p.llr(b, a), atol=1e-9)
    # n = 1: ln N([a;b]; 0, [[Ψ+I, Ψ],[Ψ, Ψ+I]]) − ln N(a; 0, Ψ+I) − ln N(b; 0, Ψ+I)
    joint = np.block([[psi + np.eye(d), psi], [psi, psi + np.eye(d)]])
    for ai, bi, got in zip(a, b, p.llr(a, b), strict=True):
        ref = (multivariate_normal(np.zeros(2 * d), joint).logpdf(np.r_[ai, bi])
               - multivariate_normal(np.zeros(d), psi + np.eye(d)).logpdf(ai)
               - multivariate_normal(np.zeros(d), psi + np.eye(d)).logpdf(bi))
        assert got == pytest.approx(ref, abs=1e-9)
    # n = 3 enrollment utterances u1..u3 and a test t: the full (4d)-dim joint Gaussian of one speaker
    n = 3
    cov1 = np.kron(np.ones((n + 1, n + 1)), psi) + np.eye((n + 1) * d)
    covn = np.kron(np.ones((n, n)), psi) + np.eye(n * d)
    for _ in range(5):
        u = rng.normal(size=(n, d)) * 1.5
        t = rng.normal(size=d) * 1.5
        ref = (multivariate_normal(np.zeros((n + 1) * d), cov1).logpdf(np.r_[u.ravel(), t])
               - multivariate_normal(np.zeros(n * d), covn).logpdf(u.ravel())
               - multivariate_normal(np.zeros(d), psi + np.eye(d)).logpdf(t))
        got = p.llr(u.mean(0)[None], t[None], num_utts=n)[0]
        assert got == pytest.approx(ref, abs=1e-9)
        got_vec = p.llr(u.mean(0)[None], t[None], num_utts=np.array([n]))[0]
        assert got_vec == pytest.approx(ref, abs=1e-9)


def test_plda_transform_length_norm(plda_model):
    p, x, _ = plda_model
    y = p.transform(x[:20], num_utts=1)
    raw = x[:20] @ p.transform_.T + p.offset
    np.testing.assert_allclose(np.sum(y * y / (p.psi + 1.0), axis=1), p.dim, rtol=1e-6)
    np.testing.assert_allclose(y / np.linalg.norm(y, axis=1, keepdims=True),
                               raw / np.linalg.norm(raw, axis=1, keepdims=True), atol=1e-6)
    y3 = p.transform(x[:20], num_utts=3)
    np.testing.assert_allclose(np.sum(y3 * y3 / (p.psi + 1 / 3), axis=1), p.dim, rtol=1e-6)
    np.testing.assert_allclose(p.transform(x[:5], normalize_length=False), raw[:5], rtol=1e-6)
    ys = p.transform(x[:5], simple_length_norm=True)
    np.testing.assert_allclose(np.linalg.norm(ys, axis=1), math.sqrt(p.dim), rtol=1e-6)


def test_plda_smoothing(plda_model):
    p = plda_model[0]
    q = Plda(p.mean, p.transform_, p.psi).smooth(0.0)
    np.testing.assert_array_equal(q.transform_, p.transform_)
    np.testing.assert_array_equal(q.psi, p.psi)
    beta = 0.3
    q = Plda(p.mean, p.transform_, p.psi).smooth(beta)
    # the within-class covariance grows by β Φ_b; the new transform makes it I and Φ_b diag(ψ')
    new_within = p.within + beta * p.between
    np.testing.assert_allclose(q.transform_ @ new_within @ q.transform_.T, np.eye(p.dim), atol=1e-9)
    np.testing.assert_allclose(q.transform_ @ p.between @ q.transform_.T, np.diag(q.psi), atol=1e-9)
    np.testing.assert_allclose(q.psi, p.psi / (1 + beta * p.psi))
    np.testing.assert_allclose(q.offset, -q.transform_ @ q.mean)


def test_plda_recovers_known_model():
    """Φ_b, Φ_w recovered from 3000 speakers × 6 utterances: relative Frobenius error < 0.06."""
    rng = np.random.default_rng(6)
    d = 4
    bet, wit = random_spd(rng, d, 2.0), random_spd(rng, d, 1.0)
    x, spk = two_cov_data(rng, 3000, 6, bet, wit, mean=np.arange(d, dtype=float))
    p = Plda().fit(x, spk, num_iters=10)
    assert np.linalg.norm(p.within - wit) / np.linalg.norm(wit) < 0.03
    assert np.linalg.norm(p.between - bet) / np.linalg.norm(bet) < 0.06
    np.testing.assert_allclose(p.mean, np.arange(d), atol=0.1)


def test_plda_save_load(plda_model, tmp_path):
    p, x, _ = plda_model
    p.save(tmp_path / "plda")
    p.write_kaldi_text(tmp_path / "plda.txt")
    assert (tmp_path / "plda.txt").read_text().startswith("<Plda>")
    for f in ("plda", "plda.txt"):
        q = Plda.load(tmp_path / f)
        np.testing.assert_array_equal(q.transform_, p.transform_)
        np.testing.assert_array_equal(q.psi, p.psi)
        np.testing.assert_array_equal(q.offset, p.offset)
    with pytest.raises(DataError):
        Plda.load(tmp_path / "nope")


def backend_scores(xtr, spk, xte, e, t, lda_dim):
    mean = global_mean(xtr)
    lda = Lda().fit(xtr - mean, spk, lda_dim)
    p = Plda().fit(length_norm(lda.transform(xtr - mean)), spk)
    y = p.transform(length_norm(lda.transform(xte - mean)))
    return score_pairs(y, e, t, p.llr, chunk=37)


def test_lda_plda_sign_and_rotation_invariance():
    rng = np.random.default_rng(8)
    d = 10
    x, spk = two_cov_data(rng, 60, 5, random_spd(rng, d, 2.0), random_spd(rng, d), rng.normal(size=d))
    xte, _ = two_cov_data(rng, 10, 3, random_spd(rng, d, 2.0), random_spd(rng, d))
    e, t = np.triu_indices(len(xte), 1)
    ref = backend_scores(x, spk, xte, e, t, 6)
    flip = np.where(rng.random(d) < 0.5, -1.0, 1.0)
    q, _ = np.linalg.qr(rng.normal(size=(d, d)))
    for m in (np.diag(flip), q, q @ np.diag(flip)):
        got = backend_scores(x @ m.T, spk, xte @ m.T, e, t, 6)
        np.testing.assert_allclose(got, ref, atol=1e-5, rtol=1e-6)  # float32 storage of the transforms


def test_cosine_scores():
    rng = np.random.default_rng(9)
    a, b = rng.normal(size=(2, 30, 5))
    m = rng.normal(size=5)
    ref = [np.dot(u - m, v - m) / np.linalg.norm(u - m) / np.linalg.norm(v - m)
           for u, v in zip(a, b, strict=True)]
    np.testing.assert_allclose(cosine_scores(a, b, m), ref, atol=1e-12)
    np.testing.assert_allclose(cosine_scores(a, a * 3.0), 1.0)


# ----------------------------------------------------------------------------- the steps end to end


def write_vectors(path, keys, x):
    vecs = {k: v.astype(np.float32) for k, v in zip(keys, x, strict=True)}
    kaldiio.save_ark(str(path.with_suffix(".ark")), vecs, scp=str(path))


def run_step(root, env, *args):
    out = subprocess.run(["bash", *args], cwd=root, env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stdout + out.stderr
    return out.stdout + out.stderr


def test_steps_on_synthetic_speakers(tmp_path, root, recipe_env):
    """Isotropic two-covariance speakers (Φ_b = 2I, Φ_w = I, d = 10): the PLDA step's EER equals the EER
    of the true model's LLR (Monte Carlo, 100k pairs each) within 2.5 % absolute (600 target trials)."""
    rng = np.random.default_rng(10)
    d = 10
    eye = np.eye(d)
    off = rng.normal(size=d) * 2
    xtr, spk = two_cov_data(rng, 300, 6, 2 * eye, eye, off)
    ktr = [f"tr{s}-{i}" for i, s in enumerate(spk)]
    xte, sp_te = two_cov_data(rng, 60, 5, 2 * eye, eye, off)
    kte = [f"te{int(s):03d}-{i:03d}" for i, s in enumerate(sp_te)]
    write_vectors(tmp_path / "train.scp", ktr, xtr)
    write_vectors(tmp_path / "test.scp", kte, xte)
    (tmp_path / "utt2spk").write_text("".join(f"{k} spk{s}\n" for k, s in zip(ktr, spk, strict=True)))
    lines = [f"{kte[i]} {kte[j]} {'target' if sp_te[i] == sp_te[j] else 'nontarget'}\n"
             for i in range(len(kte)) for j in range(i + 1, len(kte))]
    (tmp_path / "trials").write_text("".join(lines))
    # theory: the oracle LLR of the true model on fresh pairs
    oracle = Plda(np.zeros(d), eye, np.full(d, 2.0))
    n = 100_000
    z = rng.normal(size=(n, d)) * math.sqrt(2)
    tar = oracle.llr(z + rng.normal(size=(n, d)), z + rng.normal(size=(n, d)))
    non = oracle.llr(rng.normal(size=(n, d)) * math.sqrt(3), rng.normal(size=(n, d)) * math.sqrt(3))
    eer_theory = 100 * compute_eer(tar, non)[0]

    log = run_step(root, recipe_env, "steps/score_plda.sh", "--lda-dim", "10", str(tmp_path / "train.scp"),
                   str(tmp_path / "utt2spk"), str(tmp_path / "trials"), str(tmp_path / "test.scp"),
                   str(tmp_path / "plda"))
    assert "supervised back end: EER" in log
    r = json.loads((tmp_path / "plda/result.json").read_text())
    assert r["num_trials"] == len(lines) and r["num_target"] == 60 * 10
    assert r["utt2spk"] == str(tmp_path / "utt2spk") and r["options"]["lda_dim"] == 10
    print(f"synthetic speakers: PLDA step EER {r['eer']:.2f} %, true-model EER {eer_theory:.2f} %")
    assert abs(r["eer"] - eer_theory) < 2.5, (r["eer"], eer_theory)
    assert r["eer"] < 25
    for f in ("mean.vec", "transform.mat", "plda", "scores"):
        assert (tmp_path / "plda" / f).is_file()
    np.testing.assert_allclose(read_kaldi_vector(tmp_path / "plda/mean.vec"), xtr.astype(np.float32).mean(0),
                               rtol=1e-6, atol=1e-6)
    assert read_kaldi_matrix(tmp_path / "plda/transform.mat").shape == (10, 11)
    # unchanged rerun skipped; LDA dimension clamped to #spk - 1 with a notice
    log = run_step(root, recipe_env, "steps/score_plda.sh", "--lda-dim", "10", str(tmp_path / "train.scp"),
                   str(tmp_path / "utt2spk"), str(tmp_path / "trials"), str(tmp_path / "test.scp"),
                   str(tmp_path / "plda"))
    assert "skipping" in log and "supervised back end: EER" in log

    log = run_step(root, recipe_env, "steps/score_cosine.sh", "--mean-scp", str(tmp_path / "train.scp"),
                   str(tmp_path / "trials"), str(tmp_path / "test.scp"), str(tmp_path / "cos"))
    rc = json.loads((tmp_path / "cos/result.json").read_text())
    print(f"synthetic speakers: cosine step EER {rc['eer']:.2f} %")
    assert "cosine: EER" in log and rc["eer"] < eer_theory + 6, (rc["eer"], eer_theory)

    # bad input: a trial naming an utterance without a vector, reported with file and line
    (tmp_path / "trials_bad").write_text("".join(lines[:3]) + f"{kte[0]} nosuch nontarget\n")
    out = subprocess.run(["bash", "steps/score_cosine.sh", str(tmp_path / "trials_bad"),
                          str(tmp_path / "test.scp"), str(tmp_path / "bad")],
                         cwd=root, env=recipe_env, capture_output=True, text=True)
    assert out.returncode != 0 and f"{tmp_path / 'trials_bad'}:4" in out.stderr
    assert not (tmp_path / "bad/result.json").exists()


def test_steps_clamp_and_utt2spk_check(tmp_path, root, recipe_env):
    rng = np.random.default_rng(11)
    x, spk = two_cov_data(rng, 5, 8, np.eye(6) * 2, np.eye(6))
    keys = [f"s{s}-{i:02d}" for i, s in enumerate(spk)]
    write_vectors(tmp_path / "v.scp", keys, x)
    (tmp_path / "utt2spk").write_text("".join(f"{k} {s}\n" for k, s in zip(keys, spk, strict=True)))
    (tmp_path / "trials").write_text(f"{keys[0]} {keys[1]} target\n{keys[0]} {keys[9]} nontarget\n")
    args = [str(tmp_path / "v.scp"), str(tmp_path / "utt2spk"), str(tmp_path / "trials"),
            str(tmp_path / "v.scp")]
    log = run_step(root, recipe_env, "steps/score_plda.sh", "--lda-dim", "64", *args, str(tmp_path / "o"))
    assert "clamped to 4" in log
    assert json.loads((tmp_path / "o/result.json").read_text())["options"]["lda_dim"] == 4
    (tmp_path / "utt2spk").write_text("".join(f"{k} {s}\n" for k, s in zip(keys[1:], spk[1:], strict=True)))
    out = subprocess.run(["bash", "steps/score_plda.sh", *args, str(tmp_path / "o2")], cwd=root,
                         env=recipe_env, capture_output=True, text=True)
    assert out.returncode != 0 and f"{tmp_path / 'v.scp'}:1" in out.stderr


def test_real_speech_mfcc_statistics(tmp_path, root, recipe_env, speechocean_recipe):
    """speechocean762: mean+std of the voiced MFCC frames per utterance; both back ends far below chance."""
    dirs = {s: speechocean_recipe / f"data/speechocean762_{s}" for s in ("train", "test")}
    for s, d in dirs.items():
        vad = dict(kaldiio.load_scp_sequential(str(d / "vad.scp")))
        keys, vecs = [], []
        for k, f in kaldiio.load_scp_sequential(str(d / "feats.scp")):
            v = f[vad[k] > 0.5] if k in vad else f
            if len(v) < 2:
                continue
            keys.append(k)
            vecs.append(np.concatenate([v.mean(0), v.std(0)]))
        write_vectors(tmp_path / f"{s}.scp", keys, np.array(vecs))
    trials = dirs["test"] / "trials"
    run_step(root, recipe_env, "steps/score_cosine.sh", "--mean-scp", str(tmp_path / "train.scp"),
             str(trials), str(tmp_path / "test.scp"), str(tmp_path / "cos"))
    run_step(root, recipe_env, "steps/score_plda.sh", "--lda-dim", "40", str(tmp_path / "train.scp"),
             str(dirs["train"] / "utt2spk"), str(trials), str(tmp_path / "test.scp"), str(tmp_path / "plda"))
    rc = json.loads((tmp_path / "cos/result.json").read_text())
    rp = json.loads((tmp_path / "plda/result.json").read_text())
    print(f"speechocean762 MFCC mean+std: cosine EER {rc['eer']:.2f} %, PLDA EER {rp['eer']:.2f} %")
    assert rc["num_trials"] == rp["num_trials"] == sum(1 for _ in open(trials))
    assert rc["eer"] < 20 and rp["eer"] < 15


def test_read_vector_scp_errors(tmp_path):
    write_vectors(tmp_path / "a.scp", ["u1", "u2"], np.ones((2, 3)))
    keys, x = read_vector_scp(tmp_path / "a.scp")
    assert keys == ["u1", "u2"] and x.shape == (2, 3)
    kaldiio.save_ark(str(tmp_path / "b.ark"), {"u1": np.ones(3, np.float32), "u2": np.ones(4, np.float32)},
                     scp=str(tmp_path / "b.scp"))
    with pytest.raises(DataError, match=r"b.scp:2: 'u2' has dimension 4"):
        read_vector_scp(tmp_path / "b.scp")
