"""The i-vector extractor (docs/ivector.md §6) against brute-force references, properties and known models:
statistics vs a slow loop, the E-step vs the frame-level objective (incl. finite differences), auxf
monotonicity, the M-step pieces (quadratic solve, variance floor, prior transform), recovery of a known
total-variability model, extraction, and the file formats."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import scipy.linalg
import torch
from sslsv.ivector.extractor import (
    IvectorExtractor,
    IvectorStats,
    apply_generalised_floor,
    min_divergence_transform,
    solve_quadratic_matrix,
)
from sslsv.ivector.stats import batch_stats, sparsify, unvech, vech

LOG2PI = np.log(2 * np.pi)


def synthetic(C=8, D=5, S=4, n=120, T=200, seed=0, tv_scale=0.5, oracle=False):
    """Utterances sampled from a known total-variability model ``x ~ N(m_c + T_c v, Σ_c)``, with
    posteriors of the UBM ``(w, m, Σ)`` (full softmax, pruned below 0.025, renormalised), or with
    ``oracle`` the true component of each frame (posterior 1)."""
    rng = np.random.default_rng(seed)
    w = rng.dirichlet(np.ones(C) * 5)
    mu = rng.normal(0, 3, (C, D))
    A = rng.normal(0, 0.3, (C, D, D))
    cov = A @ A.transpose(0, 2, 1) + 0.5 * np.eye(D)
    Tm = rng.normal(0, tv_scale, (C, D, S - 1))
    L = np.linalg.cholesky(cov)
    P = np.linalg.inv(cov)
    ld = np.linalg.slogdet(cov)[1]
    frames, posts, vs = [], [], []
    for _ in range(n):
        v = rng.normal(size=S - 1)
        c = rng.choice(C, size=T, p=w)
        x = mu[c] + np.einsum("tds,s->td", Tm[c], v) + np.einsum("tde,te->td", L[c], rng.normal(size=(T, D)))
        x = x.astype(np.float32)
        d = x[:, None, :].astype(np.float64) - mu[None]
        ll = np.log(w) - 0.5 * (ld + D * LOG2PI + np.einsum("tcd,cde,tce->tc", d, P, d))
        g = np.exp(ll - ll.max(1, keepdims=True))
        g /= g.sum(1, keepdims=True)
        g[g < 0.025] = 0
        g /= g.sum(1, keepdims=True)
        if oracle:
            g = np.eye(C)[c]
        t, k = np.nonzero(g)
        frames.append(x)
        posts.append((t.astype(np.int32), k.astype(np.int32), g[t, k].astype(np.float32)))
        vs.append(v)
    ubm = SimpleNamespace(weights=w, means=mu, covars=cov)
    return ubm, frames, posts, Tm, np.array(vs)


@pytest.fixture(scope="module")
def data():
    return synthetic()


def train(ie, frames, posts, iters, batch=50):
    infos = []
    for _ in range(iters):
        acc = IvectorStats.like(ie)
        for s in range(0, len(frames), batch):
            acc.accumulate(ie, batch_stats(frames[s:s + batch], posts[s:s + batch], ie.num_gauss,
                                           second_order=True))
        ie, info = acc.update(ie)
        infos.append(info)
    return ie, infos


def dense_post(post, T, C):
    g = np.zeros((T, C))
    t, k, p = post
    g[t, k] = p
    return g


def test_stats_vs_slow_loop(data):
    ubm, frames, posts, *_ = data
    C = len(ubm.weights)
    st = batch_stats(frames[:3], posts[:3], C, second_order=True, chunk=97)
    D = frames[0].shape[1]
    S2 = np.zeros((C, D, D))
    for u in range(3):
        gamma, F = np.zeros(C), np.zeros((C, D))
        for t, c, p in zip(*posts[u], strict=False):
            x = frames[u][t].astype(np.float64)
            gamma[c] += p
            F[c] += p * x
            S2[c] += p * np.outer(x, x)
        np.testing.assert_allclose(st.gamma[u].numpy(), gamma, rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(st.first[u].numpy(), F, rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(unvech(st.second, D).numpy(), S2, rtol=1e-10, atol=1e-9)
    # dense (idx, post) with exact zeros -> the same sparse lists
    idx = np.tile(np.arange(C), (5, 1))
    post = np.where(np.arange(C)[None] % 3 == 0, 0.25, 0.0) * np.ones((5, 1))
    t, g, p = sparsify(torch.as_tensor(idx), torch.as_tensor(post))
    assert len(t) == 5 * len(range(0, C, 3)) and set(g.tolist()) == set(range(0, C, 3))


def frame_objective(ie, x, post, wvec):
    """Σ_t Σ_c γ_tc [ln w̄_c + ln N(x_t; M_c w, Σ_c)] + ln N(w; o e_0, I), frame by frame (numpy)."""
    M, P, wts = ie.M.numpy(), ie.Sigma_inv.numpy(), ie.w.numpy()
    D, S = M.shape[1:]
    tot = 0.0
    for t, c, p in zip(*post, strict=False):
        d = x[t].astype(np.float64) - M[c] @ wvec
        tot += p * (np.log(wts[c]) + 0.5 * np.linalg.slogdet(P[c])[1] - 0.5 * D * LOG2PI - 0.5 * d @ P[c] @ d)
    e = wvec.copy()
    e[0] -= ie.prior_offset
    return tot - 0.5 * (e @ e) - 0.5 * S * LOG2PI


def test_estep_vs_brute_force(data):
    ubm, frames, posts, *_ = data
    ie = IvectorExtractor.init_from_ubm(ubm, 4, seed=3)
    ie, _ = train(ie, frames, posts, 1)       # a non-trivial model (Σ, M, offset all updated)
    x, post = frames[7][:40], tuple(a[posts[7][0] < 40] for a in posts[7])
    st = batch_stats([x], [post], ie.num_gauss, second_order=True)
    res = ie.estep(st)
    S = ie.ivector_dim
    f = lambda w: frame_objective(ie, x, post, w)  # noqa: E731
    # negative Hessian of the objective (finite differences; it is quadratic, so exact up to rounding)
    m = res.mean[0].numpy()
    h = 1e-2
    E = np.eye(S) * h
    H = np.array([[(f(m + E[i] + E[j]) - f(m + E[i] - E[j]) - f(m - E[i] + E[j]) + f(m - E[i] - E[j]))
                   / (4 * h * h) for j in range(S)] for i in range(S)])
    L = (res.chol[0] @ res.chol[0].T).numpy()
    np.testing.assert_allclose(-H, L, rtol=1e-6, atol=1e-5)
    # brute-force L and b, maximiser = E[w]
    Mn, Pn = ie.M.numpy(), ie.Sigma_inv.numpy()
    Lb, bb = np.eye(S), np.zeros(S)
    bb[0] = ie.prior_offset
    for t, c, p in zip(*post, strict=False):
        Lb += p * Mn[c].T @ Pn[c] @ Mn[c]
        bb += p * Mn[c].T @ Pn[c] @ x[t].astype(np.float64)
    np.testing.assert_allclose(L, Lb, rtol=1e-10, atol=1e-8)
    np.testing.assert_allclose(m, np.linalg.solve(Lb, bb), rtol=1e-10, atol=1e-8)
    # gradient at a random point: central differences vs the analytic b − L w
    w = m + np.random.default_rng(0).normal(size=S)
    grad = np.array([(f(w + E[i]) - f(w - E[i])) / (2 * h) for i in range(S)])
    np.testing.assert_allclose(grad, bb - Lb @ w, rtol=1e-6, atol=1e-4)
    assert np.all(np.abs(np.array([(f(m + E[i]) - f(m - E[i])) / (2 * h) for i in range(S)])) < 1e-4)
    # variational auxf = E_q[frame objective] − KL(q || prior) + the ln N(w) term of f that E_q replaces
    V = np.linalg.inv(Lb)
    Bm = Lb - np.eye(S)
    e = m.copy()
    e[0] -= ie.prior_offset
    kl = 0.5 * (e @ e + np.trace(V) - S - np.linalg.slogdet(V)[1])
    acoustic = f(m) + 0.5 * (e @ e) + 0.5 * S * LOG2PI - 0.5 * np.trace(V @ Bm)
    got = float(res.auxf_partial[0] + ie.second_order_term(st.second))
    assert got == pytest.approx(acoustic - kl, rel=1e-10, abs=1e-7)
    # point-estimate auxf (no second-order stats) at the prior mean and at E[w]: change ≥ 0
    iv, change = ie.extract(batch_stats([x], [post], ie.num_gauss), return_objf_change=True)
    assert change[0] > 0
    np.testing.assert_allclose(iv[0], (m - ie.prior_offset * np.eye(S)[0]).astype(np.float32), rtol=1e-5)


def test_auxf_monotone_and_prior(data):
    ubm, frames, posts, *_ = data
    ie = IvectorExtractor.init_from_ubm(ubm, 4, seed=0)
    ie, infos = train(ie, frames, posts, 6)
    auxf = [i.auxf_per_frame for i in infos]
    print("auxf/frame per iteration:", " ".join(f"{a:.6f}" for a in auxf))
    assert all(b - a >= -1e-6 for a, b in zip(auxf, auxf[1:], strict=False)), auxf
    assert auxf[-1] - auxf[0] > 0.1
    st = batch_stats(frames, posts, ie.num_gauss)
    iv, change = ie.extract(st, return_objf_change=True)
    assert np.all(change >= 0)
    # after the prior update the training i-vectors are centred (≈ 0) with ≈ unit scale
    assert np.all(np.abs(iv.mean(0)) < 0.15), iv.mean(0)
    assert 0.5 < iv[:, 1:].std(0).mean() < 1.5


def test_solve_quadratic_matrix():
    rng = np.random.default_rng(1)
    G, D, S = 3, 4, 5
    A = rng.normal(size=(G, S, S))
    R = A @ A.transpose(0, 2, 1) + np.eye(S)
    Y = rng.normal(size=(G, D, S))
    B = rng.normal(size=(G, D, D))
    P = B @ B.transpose(0, 2, 1) + np.eye(D)
    M0 = rng.normal(size=(G, D, S))
    t = lambda a: torch.as_tensor(a)  # noqa: E731
    M, impr = solve_quadratic_matrix(t(R), t(Y), t(P), t(M0))
    np.testing.assert_allclose(M.numpy(), Y @ np.linalg.inv(R), rtol=1e-9, atol=1e-10)
    assert torch.all(impr >= 0)
    # rank-deficient R: eigenvalue floor path; the objective must not decrease
    Rd = R.copy()
    u = rng.normal(size=(G, S, 2))
    Rd = u @ u.transpose(0, 2, 1)
    Md, impr = solve_quadratic_matrix(t(Rd), t(Y), t(P), t(M0))

    def objf(Mx):
        return np.einsum("gds,gde,ges->g", Mx, P, Y) - 0.5 * np.einsum("gde,ges,gst,gdt->g", P, Mx, Rd, Mx)

    assert np.all(objf(Md.numpy()) >= objf(M0) - 1e-9)
    assert np.all(np.isfinite(Md.numpy()))


def test_variance_floor():
    rng = np.random.default_rng(2)
    G, D = 6, 4
    A = rng.normal(size=(G, D, D)) * np.linspace(0.05, 1.5, G)[:, None, None]
    sig = A @ A.transpose(0, 2, 1) + 1e-3 * np.eye(D)
    Fm = rng.normal(size=(D, D))
    F = 0.1 * (Fm @ Fm.T + np.eye(D))
    out, n = apply_generalised_floor(torch.as_tensor(sig), torch.as_tensor(F))
    out = out.numpy()
    assert n > 0
    LF = np.linalg.cholesky(F)
    for g in range(G):
        Li = np.linalg.inv(LF)
        ev = np.linalg.eigvalsh(Li @ out[g] @ Li.T)
        assert ev.min() >= 1 - 1e-10
        # unchanged where Σ − F was already PSD
        if np.linalg.eigvalsh(Li @ sig[g] @ Li.T).min() >= 1:
            np.testing.assert_allclose(out[g], sig[g], rtol=1e-10, atol=1e-12)
        # and eigen-directions already above the floor are kept
        assert np.linalg.eigvalsh(out[g] - F).min() >= -1e-10


def test_prior_transform_invariants(data):
    ubm, frames, posts, *_ = data
    rng = np.random.default_rng(4)
    S = 4
    ie = IvectorExtractor.init_from_ubm(ubm, S, seed=1)
    acc = IvectorStats.like(ie)
    acc.accumulate(ie, batch_stats(frames, posts, ie.num_gauss, second_order=True))
    mu = acc.h / acc.num_utts
    sec = acc.H / acc.num_utts
    Cbar = (sec - torch.outer(mu, mu)).numpy()
    V0, o0 = min_divergence_transform(mu, sec, ie.M, ie.Sigma_inv, None)
    V, o = min_divergence_transform(mu, sec, ie.M, ie.Sigma_inv, ie.w)
    for Vx, ox in ((V0, o0), (V, o)):
        Vn = Vx.numpy()
        np.testing.assert_allclose(Vn @ Cbar @ Vn.T, np.eye(S), atol=1e-4)
        vm = Vn @ mu.numpy()
        assert ox > 0 and vm[0] == pytest.approx(ox, rel=1e-10)
        np.testing.assert_allclose(vm[1:], 0, atol=1e-8 * ox)
    assert o == pytest.approx(o0, rel=1e-12)
    np.testing.assert_allclose(V[0].numpy(), V0[0].numpy(), rtol=1e-12)   # row 0 unchanged
    Qm = V[1:].numpy() @ np.linalg.pinv(V0[1:].numpy())                   # rows 1.. rotated
    np.testing.assert_allclose(Qm @ Qm.T, np.eye(S - 1), atol=1e-8)
    np.testing.assert_allclose(Qm @ V0[1:].numpy(), V[1:].numpy(), atol=1e-8)
    Minv = torch.linalg.solve(V.T, ie.M.transpose(1, 2)).transpose(1, 2)
    # the reparametrisation: M_new (V w) = M_old w
    wv = torch.as_tensor(rng.normal(size=S))
    np.testing.assert_allclose((Minv @ (V @ wv)).numpy(), (ie.M @ wv).numpy(), rtol=1e-9, atol=1e-9)
    # Kaldi's diagonalisation uses the (1..,1..) block of V only, so Ū[1:,1:] is diagonal exactly when
    # V[1:,0] = 0; check the quantity it does diagonalise instead
    Ub = torch.einsum("c,cds,cde,cet->st", ie.w, ie.M, ie.Sigma_inv, ie.M).numpy()
    Gm = np.linalg.inv(V0[1:, 1:].numpy()).T @ Ub[1:, 1:] @ np.linalg.inv(V0[1:, 1:].numpy())
    Gq = Qm @ Gm @ Qm.T
    np.testing.assert_allclose(Gq - np.diag(np.diag(Gq)), 0, atol=1e-8 * np.abs(Gq).max())
    d = np.abs(np.diag(Gq))
    assert np.all(d[:-1] >= d[1:] - 1e-12)


def test_recovers_known_tv_model():
    """Given the true frame alignments, the learned subspace span(M) (CD × S) matches span([m, T]) of
    the sampling model (largest principal angle < 3°), and the adapted means M_c E[w_u] match
    m_c + T_c v_u (RMS error < 0.1 of the RMS speaker offset). Measured figures are printed."""
    ubm, frames, posts, Tm, vs = synthetic(C=6, D=4, S=3, n=300, T=300, seed=5, tv_scale=0.8, oracle=True)
    ie = IvectorExtractor.init_from_ubm(ubm, 3, seed=0)
    ie, infos = train(ie, frames, posts, 8, batch=100)
    C, D, S = ie.M.shape
    true = np.concatenate([ubm.means.reshape(C * D, 1), Tm.reshape(C * D, S - 1)], axis=1)
    learned = ie.M.numpy().reshape(C * D, S)
    angles = np.degrees(scipy.linalg.subspace_angles(true, learned))
    print("principal angles (deg):", angles)
    assert angles.max() < 3
    st = batch_stats(frames, posts, C)
    w = ie.estep(st, auxf=False).mean.numpy()
    fitted = np.einsum("cds,us->ucd", ie.M.numpy(), w)
    ref = ubm.means[None] + np.einsum("cds,us->ucd", Tm, vs)
    var = ref - ubm.means[None]
    err = np.sqrt(((fitted - ref) ** 2).mean() / (var ** 2).mean())
    print("relative RMS error of the adapted means (of the speaker offsets):", err)
    assert err < 0.1


def test_extractor_file_roundtrip_and_acc_float32(tmp_path, data):
    ubm, frames, posts, *_ = data
    ie = IvectorExtractor.init_from_ubm(ubm, 4, seed=7)
    ie.save(tmp_path / "0.ie")
    ie2 = IvectorExtractor.load(tmp_path / "0.ie")
    for k in ("M", "Sigma_inv", "w", "U_packed", "Q", "gconst"):
        assert torch.equal(getattr(ie, k), getattr(ie2, k)), k
    assert ie2.prior_offset == 100.0
    # init: column 0 = μ/100, other columns N(0,1) from the seed, injectable
    np.testing.assert_allclose(ie.M[:, :, 0].numpy(), ubm.means / 100, rtol=1e-15)
    rb = np.ones((8, 5, 3))
    assert torch.equal(IvectorExtractor.init_from_ubm(ubm, 4, random_block=rb).M[:, :, 1:],
                       torch.as_tensor(rb))
    assert torch.equal(IvectorExtractor.init_from_ubm(ubm, 4, seed=7).M, ie.M)
    # accumulators: summing two halves = one pass; R goes through float32 on disk
    a1, a2, a = IvectorStats.like(ie), IvectorStats.like(ie), IvectorStats.like(ie)
    a1.accumulate(ie, batch_stats(frames[:60], posts[:60], 8, second_order=True))
    a2.accumulate(ie, batch_stats(frames[60:], posts[60:], 8, second_order=True))
    a.accumulate(ie, batch_stats(frames, posts, 8, second_order=True))
    a1.save(tmp_path / "1.acc")
    b = IvectorStats.load(tmp_path / "1.acc")
    assert torch.equal(b.R, a1.R.float().double())
    b.add(a2)
    np.testing.assert_allclose(b.Y.numpy(), a.Y.numpy(), rtol=1e-10)
    assert b.auxf == pytest.approx(a.auxf, rel=1e-10)
    new1, _ = b.update(ie)
    new2, _ = a.update(ie)
    np.testing.assert_allclose(new1.M.numpy(), new2.M.numpy(), rtol=1e-4, atol=1e-6)


def test_vech_roundtrip():
    a = torch.randn(3, 5, 5, dtype=torch.float64)
    a = a + a.transpose(1, 2)
    assert torch.equal(unvech(vech(a), 5), a)
    assert vech(a).shape == (3, 15)
    # Kaldi packed order: (0,0), (1,0), (1,1), (2,0), ...
    assert vech(torch.arange(9.0).reshape(3, 3)).tolist() == [0, 3, 4, 6, 7, 8]


def _kaldi_ie_text(M, P, w, o) -> str:
    """final.ie in Kaldi's text form, written as IvectorExtractor::Write does (use_weights=false)."""
    C, D, S = M.shape
    out = ["<IvectorExtractor> <w>  [ ]\n<w_vec>  [ " + " ".join(f"{v:.17g}" for v in w) + " ]\n",
           f"<M> {C} "]
    for c in range(C):
        out.append(" [" + "".join("\n  " + " ".join(f"{v:.17g}" for v in row) + " " for row in M[c]) + "]\n")
    out.append("<SigmaInv> ")
    r, cc = np.tril_indices(D)
    for c in range(C):
        packed = P[c][r, cc]
        lines, k = [], 0
        for i in range(D):
            lines.append(" ".join(f"{v:.17g}" for v in packed[k:k + i + 1]) + " ")
            k += i + 1
        out.append("[\n" + "\n".join(lines) + "]\n")
    out.append(f"<IvectorOffset> {o!r} </IvectorExtractor> ")
    return "".join(out)


def _kaldi_ie_binary(M, P, w, o) -> bytes:
    import struct
    C, D, S = M.shape
    i32 = lambda v: b"\x04" + struct.pack("<i", v)  # noqa: E731
    b = [b"\0B<IvectorExtractor> <w> DM ", i32(0), i32(0), b"<w_vec> DV ", i32(C), w.astype("<f8").tobytes(),
         b"<M> ", i32(C)]
    for c in range(C):
        b += [b"DM ", i32(D), i32(S), M[c].astype("<f8").tobytes()]
    b.append(b"<SigmaInv> ")
    r, cc = np.tril_indices(D)
    for c in range(C):
        b += [b"DP ", i32(D), P[c][r, cc].astype("<f8").tobytes()]
    b += [b"<IvectorOffset> ", b"\x08" + struct.pack("<d", o), b"</IvectorExtractor> "]
    return b"".join(b)


def test_convert_kaldi_ie(tmp_path, data):
    from convert_kaldi_ie import main as convert
    ubm, frames, posts, *_ = data
    ie = IvectorExtractor.init_from_ubm(ubm, 4, seed=2)
    M, P, w = ie.M.numpy(), ie.Sigma_inv.numpy(), ie.w.numpy()
    (tmp_path / "text.ie").write_text(_kaldi_ie_text(M, P, w, 37.5))
    (tmp_path / "bin.ie").write_bytes(_kaldi_ie_binary(M, P, w, 37.5))
    for name in ("text", "bin"):
        assert convert([str(tmp_path / f"{name}.ie"), str(tmp_path / f"{name}.npz")]) == 0
        got = IvectorExtractor.load(tmp_path / f"{name}.npz")
        np.testing.assert_allclose(got.M.numpy(), M, rtol=1e-15)
        np.testing.assert_allclose(got.Sigma_inv.numpy(), P, rtol=1e-15)
        np.testing.assert_allclose(got.w.numpy(), w, rtol=1e-15)
        assert got.prior_offset == 37.5
    (tmp_path / "bad.ie").write_text("<IvectorExtractor> <w> [ 1 ] ")
    assert convert([str(tmp_path / "bad.ie"), str(tmp_path / "bad.npz")]) == 1
