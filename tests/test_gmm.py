"""UBM maths (docs/ivector.md §4, §5, §6.3, §10.1 items 8-12): evaluators against direct formulas and scipy,
gselect against a brute-force sort, EM monotonicity, parameter recovery, Kaldi's update rules, splitting,
the init schedule, reservoir sampling, frame posteriors against a slow numpy reference, and the Kaldi
text-format conversion."""

from __future__ import annotations

import logging
import subprocess
import sys

import numpy as np
import pytest
import torch
from scipy.stats import multivariate_normal
from sslsv.ivector.gmm import (
    DiagAccumulator,
    DiagGmm,
    DiagLoglik,
    FrameReservoir,
    FullAccumulator,
    FullGmm,
    FullLoglik,
    GmmStats,
    floor_eigenvalues,
    gselect,
    mle_diag_update,
    mle_full_update,
    split_gmm,
    split_schedule,
    train_init,
    tril_indices,
    vech_outer_t,
)
from sslsv.ivector.kaldi_gmm import read_kaldi_gmm_text, write_kaldi_gmm_text
from sslsv.ivector.posteriors import PosteriorError, UbmPosteriors

F64 = torch.float64


def rand_diag(rng, c=6, d=4) -> DiagGmm:
    w = rng.random(c) + 0.2
    return DiagGmm(w / w.sum(), rng.standard_normal((c, d)) * 2, rng.random((c, d)) + 0.3)


def rand_full(rng, c=5, d=4) -> FullGmm:
    a = rng.standard_normal((c, d, d)) * 0.5
    w = rng.random(c) + 0.2
    return FullGmm(w / w.sum(), rng.standard_normal((c, d)) * 2, a @ a.transpose(0, 2, 1) + 0.5 * np.eye(d))


def sample(gmm, n, rng) -> np.ndarray:
    comp = rng.choice(gmm.num_gauss, size=n, p=gmm.weights / gmm.weights.sum())
    z = rng.standard_normal((n, gmm.dim))
    if isinstance(gmm, DiagGmm):
        return gmm.means[comp] + np.sqrt(gmm.vars[comp]) * z
    chol = np.linalg.cholesky(gmm.covars)
    return gmm.means[comp] + np.einsum("nij,nj->ni", chol[comp], z)


# ------------------------------------------------------------------------------------------ evaluators

def test_diag_loglik_matches_direct_formula():
    rng = np.random.default_rng(0)
    g = rand_diag(rng)
    x = rng.standard_normal((50, g.dim)) * 3
    ref = (np.log(g.weights)[None] - 0.5 * (g.dim * np.log(2 * np.pi) + np.log(g.vars).sum(1)[None]
                                             + (((x[:, None] - g.means[None]) ** 2) / g.vars[None]).sum(2)))
    got = DiagLoglik(g, "cpu", F64)(torch.as_tensor(x)).numpy()
    np.testing.assert_allclose(got, ref, rtol=0, atol=1e-9)


@pytest.mark.parametrize("mode", ["dense", "grouped"])
def test_full_loglik_matches_scipy(mode):
    rng = np.random.default_rng(1)
    g = rand_full(rng, c=7, d=5)
    x = rng.standard_normal((40, g.dim)) * 2
    ref = np.stack([multivariate_normal(g.means[c], g.covars[c]).logpdf(x) + np.log(g.weights[c])
                    for c in range(g.num_gauss)], axis=1)
    ev = FullLoglik(g, "cpu", F64, chunk_bytes=4096, restricted=mode, block=4)   # tiny chunks and blocks
    np.testing.assert_allclose(ev(torch.as_tensor(x)).numpy(), ref, rtol=0, atol=1e-9)
    idx = torch.as_tensor(rng.integers(0, g.num_gauss, size=(40, 3)))
    np.testing.assert_allclose(ev(torch.as_tensor(x), idx).numpy(), np.take_along_axis(ref, idx.numpy(), 1),
                               rtol=0, atol=1e-9)


def brute_gselect(ll: np.ndarray, k: int) -> np.ndarray:
    out = []
    for row in ll:
        pairs = sorted(((v, i) for i, v in enumerate(row)), reverse=True)   # Kaldi: (loglik, index) desc
        out.append([i for _, i in pairs[:k]])
    return np.array(out)


def test_gselect_equals_brute_force_with_ties():
    rng = np.random.default_rng(2)
    ll = np.round(rng.standard_normal((300, 12)) * 1.5)     # many exact ties, also across the k boundary
    for k in (1, 3, 5, 12, 20):
        got = gselect(torch.as_tensor(ll), k).numpy()
        np.testing.assert_array_equal(got, brute_gselect(ll, min(k, 12)))
    ll = rng.standard_normal((100, 40))
    np.testing.assert_array_equal(gselect(torch.as_tensor(ll), 30).numpy(), brute_gselect(ll, 30))


# ------------------------------------------------------------------------------------------ EM

def test_diag_em_monotone_with_fixed_gselect():
    rng = np.random.default_rng(3)
    true = rand_diag(rng, c=8, d=3)
    x = torch.as_tensor(sample(true, 4000, rng))
    g0 = DiagGmm(np.full(8, 1 / 8), x.numpy()[rng.choice(4000, 8, replace=False)],
                 np.tile(x.numpy().var(0), (8, 1)))
    gmm, prev = g0, -np.inf
    for _ in range(8):
        acc = DiagAccumulator(gmm, g0, 3, "cpu", F64)
        acc.add(x)
        st = acc.stats()
        assert st.avg_loglik >= prev - 1e-9
        prev = st.avg_loglik
        gmm, info = mle_diag_update(gmm, st, remove_low_count_gaussians=False)
        assert info.updated == 8


def test_full_em_monotone_with_fixed_gselect():
    rng = np.random.default_rng(4)
    true = rand_full(rng, c=6, d=3)
    x = torch.as_tensor(sample(true, 5000, rng))
    g0 = DiagGmm(np.full(6, 1 / 6), x.numpy()[rng.choice(5000, 6, replace=False)],
                 np.tile(x.numpy().var(0), (6, 1))).to_full()
    gs = g0.to_diag()
    gmm, prev, lls = g0, -np.inf, []
    for it in range(8):
        acc = FullAccumulator(gmm, gs, 3, "cpu", F64)
        for a in range(0, 5000, 1500):
            acc.add(x[a:a + 1500])
        st = acc.stats()
        if it == 1:                                   # the dense second-order path gives the same stats
            de = FullAccumulator(gmm, gs, 3, "cpu", F64, grouped=False)
            de.add(x)
            for key in ("n", "m1", "m2"):
                np.testing.assert_allclose(getattr(de.stats(), key), getattr(st, key), rtol=1e-12, atol=1e-9)
            assert de.stats().tot_loglik == pytest.approx(st.tot_loglik, rel=1e-12)
        assert st.avg_loglik >= prev - 1e-9
        prev = st.avg_loglik
        lls.append(prev)
        gmm, _ = mle_full_update(gmm, st)
    assert lls[-1] > lls[0] + 0.1


def test_vech_outer_is_the_packed_outer_product():
    x = torch.as_tensor(np.random.default_rng(8).standard_normal((37, 9)))
    r, c = tril_indices(9)
    flat = torch.as_tensor(r * 9 + c)
    ref = np.stack([np.outer(v, v)[r, c] for v in x.numpy()])
    np.testing.assert_array_equal(vech_outer_t(x, flat).T.numpy(), ref)        # the same products, exactly
    ref32 = np.stack([np.outer(v, v)[r, c] for v in x.float().numpy()])
    np.testing.assert_array_equal(vech_outer_t(x.float(), flat).numpy(), ref32.T)


def test_full_stats_in_float32_match_float64():
    """The float32 E-step (float32 log-likelihoods and second-order products, float64 sums over chunks) on
    72-dim data of MFCC-like scale: statistics within 1e-5 of the float64 E-step, the same frame
    log-likelihood to 1e-6 relative, and M-step covariances within 1e-5."""
    rng = np.random.default_rng(9)
    true = rand_full(rng, c=16, d=72)
    true.means *= 5.0
    x = sample(true, 30000, rng).astype(np.float32)
    gs = true.to_diag()
    st = {}
    for dt in (torch.float32, F64):
        acc = FullAccumulator(true, gs, 5, "cpu", dt)
        for a in range(0, len(x), 8192):
            acc.add(x[a:a + 8192])
        st[dt] = acc.stats()
    a, b = st[torch.float32], st[F64]
    assert a.avg_loglik == pytest.approx(b.avg_loglik, rel=1e-6)
    assert np.abs(a.m2 - b.m2).max() < 1e-5 * np.abs(b.m2).max()
    np.testing.assert_allclose(a.n, b.n, rtol=1e-5)
    ga, gb = mle_full_update(true, a)[0], mle_full_update(true, b)[0]
    assert np.abs(ga.covars - gb.covars).max() < 1e-5 * np.abs(gb.covars).max()


def match(est_means: np.ndarray, true_means: np.ndarray) -> np.ndarray:
    """Index of the estimated component nearest to each true one (must be a permutation)."""
    d = ((true_means[:, None] - est_means[None]) ** 2).sum(2)
    perm = d.argmin(1)
    assert len(set(perm.tolist())) == len(perm)
    return perm


def test_diag_parameters_recovered():
    rng = np.random.default_rng(5)
    true = DiagGmm([0.5, 0.3, 0.2], [[0, 0], [6, 0], [0, 6]], [[1, 0.5], [0.3, 2], [1.5, 1]])
    x = sample(true, 30000, rng)
    init = DiagGmm(np.full(3, 1 / 3), true.means + rng.standard_normal((3, 2)), np.ones((3, 2)) * 4)
    gmm = train_init(x, 3, 3, 20, rng, init=init, dtype=F64)      # inc = 0: stays at 3 components
    p = match(gmm.means, true.means)
    # tolerance from the sampling error of 30k frames (a few standard errors)
    np.testing.assert_allclose(gmm.weights[p], true.weights, atol=0.015)
    np.testing.assert_allclose(gmm.means[p], true.means, atol=0.05)
    np.testing.assert_allclose(gmm.vars[p], true.vars, rtol=0.06)


def test_full_parameters_recovered():
    rng = np.random.default_rng(6)
    cov = np.array([[[1.0, 0.6, 0.0], [0.6, 1.0, 0.3], [0.0, 0.3, 0.5]],
                    [[2.0, -0.5, 0.2], [-0.5, 1.0, 0.0], [0.2, 0.0, 1.5]]])
    true = FullGmm([0.6, 0.4], [[0, 0, 0], [5, 5, 0]], cov)
    x = torch.as_tensor(sample(true, 30000, rng))
    gmm = DiagGmm([0.5, 0.5], true.means + 0.5, np.ones((2, 3))).to_full()
    for _ in range(15):
        acc = FullAccumulator(gmm, None, 0, "cpu", F64)
        acc.add(x)
        gmm, _ = mle_full_update(gmm, acc.stats())
    p = match(gmm.means, true.means)
    np.testing.assert_allclose(gmm.weights[p], true.weights, atol=0.015)
    np.testing.assert_allclose(gmm.means[p], true.means, atol=0.05)
    np.testing.assert_allclose(gmm.covars[p], true.covars, atol=0.08)


# ------------------------------------------------------------------------------------------ Kaldi rules

def test_split_schedule_counts():
    s = split_schedule(2048, 1024, 20)
    assert s[:11] == [1024 + 102 * i for i in range(11)] and s[10] == 2044 and s[11:] == [2048] * 9
    assert split_schedule(16, 8, 20) == [8] * 20            # C - C0 < I/2: inc = 0, never grows
    assert split_schedule(12, 6, 4) == [6, 9, 12, 12]


def test_train_init_follows_schedule_incl_inc_zero(caplog):
    rng = np.random.default_rng(7)
    x = sample(rand_diag(rng, c=4, d=2), 3000, rng)

    def sizes() -> list[int]:   # the Gaussians after each init iteration, from its log line
        out = [int(r.getMessage().rsplit("; ", 1)[1].split()[0]) for r in caplog.records
               if r.getMessage().startswith("init iteration")]
        caplog.clear()
        return out
    with caplog.at_level(logging.INFO, logger="sslsv.ivector.gmm"):
        g = train_init(x, 12, 6, 4, np.random.default_rng(0), remove_low_count_gaussians=False, dtype=F64)
        assert sizes() == [6, 9, 12, 12] and g.num_gauss == 12
        g = train_init(x, 16, 8, 20, np.random.default_rng(0), remove_low_count_gaussians=False, dtype=F64)
        assert sizes() == [8] * 20 and g.num_gauss == 8


def test_split_perturbs_heaviest_first_index_on_ties():
    g = DiagGmm([0.4, 0.4, 0.2], [[0.0, 0.0], [1.0, 1.0], [2.0, 2.0]], [[4.0, 1.0], [1.0, 1.0], [1.0, 1.0]])
    z = np.array([[1.0, -1.0], [0.5, 0.5]])
    s = split_gmm(g, 5, np.random.default_rng(0), noise=z)
    # 1st split: component 0 (tie with 1, first index) -> weights .2 .4 .2 .2; 2nd: component 1
    np.testing.assert_allclose(s.weights, [0.2, 0.2, 0.2, 0.2, 0.2])
    np.testing.assert_allclose(s.means[3], [0 + 0.1 * 2 * 1.0, 0 - 0.1 * 1 * 1.0])
    np.testing.assert_allclose(s.means[0], [0 - 0.2, 0 + 0.1])
    np.testing.assert_allclose(s.means[4], [1.05, 1.05])
    np.testing.assert_allclose(s.means[1], [0.95, 0.95])
    np.testing.assert_allclose(s.vars[3], g.vars[0])


def diag_stats(n, m1, m2) -> GmmStats:
    return GmmStats("diag", np.asarray(n, float), np.asarray(m1, float), np.asarray(m2, float), 0.0, 1.0)


def test_diag_update_removal_and_skip():
    g = DiagGmm([0.25] * 4, [[0.0], [1.0], [2.0], [3.0]], [[1.0]] * 4)
    n = [500.0, 5.0, 0.0, 495.0]                          # components 1, 2 below min occupancy 10
    m1 = [[500.0 * 0.5], [5.0], [0.0], [495.0 * 3.5]]
    m2 = [[500.0 * (0.5 ** 2 + 2.0)], [5.0 * 2], [0.0], [495.0 * (3.5 ** 2 + 0.0001)]]
    st = diag_stats(n, m1, m2)
    kept, info = mle_diag_update(g, st, remove_low_count_gaussians=False)
    assert info.kept == [1, 2] and info.removed == []
    np.testing.assert_allclose(kept.weights, [0.5, max(0.005, 1e-4), 1e-4, 0.495])   # not renormalised
    np.testing.assert_allclose(kept.means[[1, 2]], g.means[[1, 2]])                # old params kept
    np.testing.assert_allclose(kept.vars[[0, 3], 0], [2.0, 0.001])                 # var floor 0.001
    np.testing.assert_allclose(kept.means[[0, 3], 0], [0.5, 3.5])
    rem, info = mle_diag_update(g, st, remove_low_count_gaussians=True)
    assert info.removed == [1, 2] and rem.num_gauss == 2
    np.testing.assert_allclose(rem.weights, np.array([0.5, 0.495]) / 0.995)       # renormalised
    # never remove the last Gaussian: with one component nothing is removed
    one, info = mle_diag_update(DiagGmm([1.0], [[0.0]], [[1.0]]), diag_stats([1.0], [[0.0]], [[1.0]]))
    assert one.num_gauss == 1 and info.kept == [0]


def test_full_update_eigen_floor_and_removal():
    rng = np.random.default_rng(8)
    d = 4
    g = FullGmm([0.5, 0.3, 0.2], np.zeros((3, d)), np.tile(np.eye(d), (3, 1, 1)))
    # component 0: nearly rank-1 scatter (eigenvalues far below the floors); 1: ordinary; 2: too few
    x0 = rng.standard_normal((1000, 1)) @ np.ones((1, d)) * 30 + rng.standard_normal((1000, d)) * 1e-3
    x1 = rng.standard_normal((1000, d))
    x2 = rng.standard_normal((50, d))
    n = np.array([1000.0, 1000.0, 50.0])
    m1 = np.stack([x0.sum(0), x1.sum(0), x2.sum(0)])
    m2 = np.stack([x0.T @ x0, x1.T @ x1, x2.T @ x2])
    st = GmmStats("full", n, m1, m2, 0.0, 1.0)
    new, info = mle_full_update(g, st, remove_low_count_gaussians=False)
    assert info.kept == [2]
    for c in (0, 1):
        lam = np.linalg.eigvalsh(new.covars[c])
        raw = np.linalg.eigvalsh(m2[c] / n[c] - np.outer(m1[c] / n[c], m1[c] / n[c]))
        floor = max(0.001, np.abs(raw).max() / 1e4)
        assert lam.min() >= floor * (1 - 1e-9)
    np.testing.assert_allclose(new.covars[2], g.covars[2])
    np.testing.assert_allclose(new.weights[2], max(50 / 2050, 1e-4))
    rem, info = mle_full_update(g, st, remove_low_count_gaussians=True)
    assert info.removed == [2] and rem.num_gauss == 2
    np.testing.assert_allclose(rem.weights.sum(), 1.0)
    out, floored = floor_eigenvalues(np.diag([1.0, 1e-6, 5.0])[None])
    np.testing.assert_allclose(np.linalg.eigvalsh(out[0]), [0.001, 1.0, 5.0])
    assert floored == 1


def test_reservoir_matches_sequential_definition():
    cap, dim = 50, 2
    blocks = [np.arange(n * dim, dtype=np.float32).reshape(n, dim) + 1000 * i
              for i, n in enumerate([30, 40, 70, 10, 100])]
    res = FrameReservoir(cap, dim, np.random.default_rng(9))
    for b in blocks:
        res.add(b)
    # the same draws, consumed frame by frame
    rng = np.random.default_rng(9)
    buf = np.zeros((cap, dim), np.float32)
    seen = 0
    for b in blocks:
        fill = min(max(cap - seen, 0), len(b))
        buf[seen:seen + fill] = b[:fill]
        rest = len(b) - fill
        if rest:
            slots = rng.integers(0, cap, size=rest)
            u = rng.random(rest)
            for i in range(rest):
                n = seen + fill + i + 1
                if u[i] < cap / n:
                    buf[slots[i]] = b[fill + i]
        seen += len(b)
    np.testing.assert_array_equal(res.frames(), buf)
    small = FrameReservoir(1000, dim, np.random.default_rng(0))
    small.add(blocks[0])
    np.testing.assert_array_equal(small.frames(), blocks[0])


def test_model_files_roundtrip(tmp_path):
    rng = np.random.default_rng(10)
    g = rand_full(rng)
    g.save(tmp_path / "a.ubm")
    h = FullGmm.load(tmp_path / "a.ubm")
    np.testing.assert_array_equal(h.covars, g.covars)
    d = h.to_diag()
    np.testing.assert_array_equal(d.vars, np.diagonal(g.covars, axis1=1, axis2=2))
    d.save(tmp_path / "a.dubm")
    np.testing.assert_array_equal(DiagGmm.load(tmp_path / "a.dubm").to_full().covars[:, 0, 1], 0.0)
    with pytest.raises(Exception, match="expected a full GMM"):
        FullGmm.load(tmp_path / "a.dubm")


@pytest.mark.parametrize("cls, cov", [(DiagGmm, np.ones((3, 5))), (FullGmm, np.ones((3, 4, 5))),
                                      (FullGmm, np.ones((3, 4)))])
def test_model_shape_check_names_the_field(cls, cov):
    cls(np.full(3, 1 / 3), np.zeros((3, 4)), np.ones((3, 4)) if cls is DiagGmm else np.ones((3, 4, 4)))
    with pytest.raises(ValueError, match=f"{cls.__name__}: inconsistent shapes .*{cls.cov_field}"):
        cls(np.full(3, 1 / 3), np.zeros((3, 4)), cov)


# ------------------------------------------------------------------------------------------ posteriors

def ref_posteriors(ubm: FullGmm, x: np.ndarray, k: int, min_post: float, scale: float):
    """Slow reference: per frame, diag loglik → sort → scipy full logliks → softmax → prune."""
    diag = ubm.to_diag()
    idx_all, post_all = [], []
    for t in range(x.shape[0]):
        dl = [np.log(diag.weights[c]) + multivariate_normal(diag.means[c], np.diag(diag.vars[c])).logpdf(x[t])
              for c in range(ubm.num_gauss)]
        sel = [i for _, i in sorted(((v, i) for i, v in enumerate(dl)), reverse=True)[:k]]
        fl = np.array([np.log(ubm.weights[c]) + multivariate_normal(ubm.means[c], ubm.covars[c]).logpdf(x[t])
                       for c in sel])
        p = np.exp(fl - fl.max())
        p /= p.sum()
        p[p < min_post] = 0.0
        p /= p.sum()
        idx_all.append(sel)
        post_all.append(p * scale)
    return np.array(idx_all), np.array(post_all)


def test_posteriors_match_slow_reference():
    rng = np.random.default_rng(11)
    ubm = rand_full(rng, c=12, d=3)
    x = sample(ubm, 60, rng)
    idx, post = UbmPosteriors(ubm, num_gselect=5, min_post=0.025, scale=0.5, dtype=F64, chunk=17)(x)
    ridx, rpost = ref_posteriors(ubm, x, 5, 0.025, 0.5)
    np.testing.assert_array_equal(idx.numpy(), ridx)
    assert post.dtype == torch.float32
    np.testing.assert_allclose(post.numpy(), rpost, atol=1e-6)
    assert (post.numpy()[rpost == 0] == 0).all() and (rpost == 0).any()
    # float32 path agrees to float32 precision
    idx32, post32 = UbmPosteriors(ubm, num_gselect=5)(x)
    np.testing.assert_array_equal(idx32.numpy(), ridx)


def test_posteriors_nan_guard():
    rng = np.random.default_rng(12)
    ubm = rand_full(rng, c=4, d=2)
    x = np.zeros((5, 2))
    x[3, 0] = np.nan
    with pytest.raises(PosteriorError):
        UbmPosteriors(ubm, num_gselect=3)(x)


# ------------------------------------------------------------------------------------------ Kaldi text

def test_kaldi_text_conversion(tmp_path, recipe_env, root):
    rng = np.random.default_rng(13)
    for g, name in ((rand_diag(rng, c=5, d=3), "m.dubm"), (rand_full(rng, c=4, d=3), "m.ubm")):
        text = write_kaldi_gmm_text(g)
        assert text.startswith("<DiagGMM>" if isinstance(g, DiagGmm) else "<FullGMM>")
        (tmp_path / "dump.txt").write_text(text)
        r = subprocess.run([sys.executable, str(root / "pyscripts/convert_kaldi_gmm.py"),
                            str(tmp_path / "dump.txt"), str(tmp_path / name)],
                           env=recipe_env, capture_output=True, text=True)
        assert r.returncode == 0, r.stderr
        h = (DiagGmm if isinstance(g, DiagGmm) else FullGmm).load(tmp_path / name)
        np.testing.assert_allclose(h.weights, g.weights, rtol=1e-8)
        np.testing.assert_allclose(h.means, g.means, rtol=1e-7, atol=1e-7)
        if isinstance(g, DiagGmm):
            np.testing.assert_allclose(h.vars, g.vars, rtol=1e-7)
        else:
            np.testing.assert_allclose(h.covars, g.covars, rtol=1e-6, atol=1e-7)
    # a hand-written dump in Kaldi's layout: C=2, D=2 diag
    text = ("<DiagGMM> \n<GCONSTS>  [ -2.5310242469692907 -5.724171427529236 ]\n<WEIGHTS>  [ 0.5 0.5 ]\n"
            "<MEANS_INVVARS>  [\n  0 0 \n  0.5 2 ]\n<INV_VARS>  [\n  1 1 \n  0.25 1 ]\n</DiagGMM> \n")
    g = read_kaldi_gmm_text(text)
    np.testing.assert_allclose(g.means, [[0, 0], [2, 2]])
    np.testing.assert_allclose(g.vars, [[1, 1], [4, 1]])
    with pytest.raises(Exception, match="GCONSTS"):
        read_kaldi_gmm_text(text.replace("-5.724171427529236", "-9.0"))
