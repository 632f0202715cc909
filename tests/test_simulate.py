"""The i-vector simulator (sslsv.simulate, local/simulate_ivectors.py): covariances recovered by a refit,
counts as asked, seed determinism, the session share, and the CLI round trip into stage 6's readers.

Tolerances for the recovered covariances come from the sample size. A sample covariance Ĉ of a Gaussian
with covariance C on ν degrees of freedom has E‖Ĉ − C‖²_F = (tr C² + (tr C)²) / ν (Wishart), a sample
mean E‖m̂ − m‖² = tr C / n. Each check allows 4 times that RMS error (error / RMS measured 0.65-1.5 over
6-8 seeds). For B the covariance of the S speaker means is C = B + W·mean(1/n_s), ν = S − 1, plus the
error of the W correction. The sizes are chosen so that B's finite-count correction (38 % of ‖B‖_F here)
is well above the tolerance (20 %): a fit without it fails.
"""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from sslsv.cluster.inputs import read_vectors, read_views
from sslsv.simulate import (
    VOX2,
    SimModel,
    apportion,
    fit_model,
    sample,
    session_share_estimate,
    summary,
    vox2_shape,
    write_corpus,
)
from sslsv.tables import DataError, read_map

ROOT = Path(__file__).resolve().parents[1]
CLI = ROOT / "local" / "simulate_ivectors.py"


def rand_cov(rng: np.random.Generator, d: int, scale: float) -> np.ndarray:
    a = rng.standard_normal((d, d))
    return a @ a.T / d * scale


def rms_err(c: np.ndarray, dof: float) -> float:
    """RMS Frobenius error of a sample covariance of covariance ``c`` on ``dof`` degrees of freedom."""
    return float(np.sqrt((np.trace(c @ c) + np.trace(c) ** 2) / dof))


@pytest.fixture(scope="module")
def model() -> SimModel:
    rng = np.random.default_rng(0)
    d = 12
    return SimModel(mean=rng.standard_normal(d), between=rand_cov(rng, d, 1.0),
                    within=rand_cov(rng, d, 5.0), view_types=["noise", "reverb"],
                    shift_mean=rng.standard_normal((2, d)),
                    shift_cov=np.stack([rand_cov(rng, d, 0.5), rand_cov(rng, d, 0.2)]))


def rel(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.linalg.norm(a - b) / np.linalg.norm(b))


# (a) covariances recovered


def test_fit_recovers_known_covariances(model: SimModel) -> None:
    """fit_model alone, on data drawn here (unequal counts 5-40 per speaker): B, W, μ and the shifts."""
    rng = np.random.default_rng(1)
    S, d = 5000, model.dim
    n = rng.integers(5, 41, S)
    spk = np.repeat(np.arange(S), n)
    N = len(spk)
    y = rng.multivariate_normal(np.zeros(d), model.between, S)
    X = model.mean + y[spk] + rng.multivariate_normal(np.zeros(d), model.within, N)
    views = np.stack([X + rng.multivariate_normal(m, c, N) for m, c in zip(model.shift_mean, model.shift_cov,
                                                                           strict=True)])
    present = np.ones((2, N), dtype=bool)
    present[1, ::3] = False                                          # some copies missing
    views[1, ~present[1]] = np.nan
    f = fit_model(X, spk, views, model.view_types, present)
    assert f.num_speakers == S and f.num_utts == N and f.view_counts == [N, int(present[1].sum())]
    W, B = model.within, model.between
    tol_w = 4 * rms_err(W, N - S)
    assert np.linalg.norm(f.within - W) < tol_w
    c = B + W * np.mean(1 / n)
    tol_b = 4 * np.hypot(rms_err(c, S - 1), np.mean(1 / n) * rms_err(W, N - S))
    assert np.linalg.norm(f.between - B) < tol_b
    assert np.linalg.norm(f.mean - model.mean) < 4 * np.sqrt(np.trace(c) / S)
    for v in range(2):
        k = int(present[v].sum())
        tol_m = 4 * np.sqrt(np.trace(model.shift_cov[v]) / k)
        assert np.linalg.norm(f.shift_mean[v] - model.shift_mean[v]) < tol_m
        assert np.linalg.norm(f.shift_cov[v] - model.shift_cov[v]) < 4 * rms_err(model.shift_cov[v], k - 1)
    # at this size: about 1 % for W and 5 % for B (4 x RMS: 20 %), where leaving out B's correction
    # W mean(1/n_s) would be a 38 % error
    assert rel(f.within, W) < 0.05 and rel(f.between, B) < 0.2


@pytest.mark.parametrize("share", [0.0, 0.5])
def test_sample_then_refit_recovers_model(model: SimModel, share: float) -> None:
    """Round trip through sample(): the refit equals the model within the tolerance of its sample size.
    With sessions (share 0.5) the refit is given the session labels (the nested estimator); its W_a has
    K − S degrees of freedom, so W's tolerance uses K − S (conservative)."""
    c = sample(model, 5000, 12, 4, share, tail=0.5, seed=3)
    f = fit_model(c.vectors, c.speakers, c.views, c.view_types, sessions=c.sessions if share else None)
    n = np.bincount(c.speakers).astype(float)
    N, S, K = c.num_utts, len(n), len(c.session_ids)
    W, B = model.within, model.between
    m2 = np.bincount(c.speakers[np.unique(c.sessions, return_index=True)[1]],
                     weights=np.bincount(c.sessions) ** 2.0, minlength=S)
    cov_means = B + share * W * np.mean(m2 / n**2) + (1 - share) * W * np.mean(1 / n)
    dof_w = (K - S) if share else (N - S)
    assert np.linalg.norm(f.within - W) < 4 * rms_err(W, dof_w)
    tol_b = 4 * np.hypot(rms_err(cov_means, S - 1), np.mean(1 / n) * rms_err(W, dof_w))
    assert np.linalg.norm(f.between - B) < tol_b, (rel(f.between, B), tol_b / np.linalg.norm(B))
    for v in range(2):
        tol_m = 4 * np.sqrt(np.trace(model.shift_cov[v]) / N)
        assert np.linalg.norm(f.shift_mean[v] - model.shift_mean[v]) < tol_m
        assert np.linalg.norm(f.shift_cov[v] - model.shift_cov[v]) < 4 * rms_err(model.shift_cov[v], N - 1)


def test_singular_covariances_and_save_load(tmp_path: Path) -> None:
    """100 speakers in 100 dimensions: B is indefinite, sampling clips it; the .npz round trip is exact."""
    rng = np.random.default_rng(2)
    d, S = 100, 100
    spk = np.repeat(np.arange(S), 20)
    X = rng.standard_normal((S, d))[spk] * 0.5 + rng.standard_normal((len(spk), d))
    m = fit_model(X, spk, source="synthetic")
    r = summary(m)
    assert r["between_negative_eigenvalues"] > 0 and r["trace_between_sampled"] > r["trace_between"]
    c = sample(m, 50, 10, 2, 0.3, tail=0.0, seed=0)
    assert np.isfinite(c.vectors).all() and c.vectors.dtype == np.float32 and c.views is None
    m.save(tmp_path / "m.npz")
    m2 = SimModel.load(tmp_path / "m.npz")
    assert np.array_equal(m2.between, m.between) and np.array_equal(m2.within, m.within)
    assert m2.view_types == [] and m2.source == "synthetic" and m2.num_utts == len(spk)
    assert not list(tmp_path.glob(".*.tmp"))
    with pytest.raises(DataError, match="no such model"):
        SimModel.load(tmp_path / "absent.npz")


# (b) counts as asked


def test_counts(model: SimModel) -> None:
    S, U, M = 300, 50.5, 7.3
    c = sample(model, S, U, M, 0.4, tail=0.8, seed=5, min_utts=6, min_sessions=2, views=False)
    n = np.bincount(c.speakers, minlength=S)
    sess_spk = c.speakers[np.unique(c.sessions, return_index=True)[1]]
    k = np.bincount(sess_spk, minlength=S)
    assert len(c.speaker_ids) == S and (n > 0).all()
    assert n.sum() == round(S * U)                    # the mean is exact (tolerance 0)
    assert k.sum() == round(S * M) == len(c.session_ids)
    assert n.min() >= 6 and k.min() >= 2 and (k <= n).all()
    assert (np.bincount(c.sessions) > 0).all()        # no empty session
    assert n.max() > 2.5 * np.median(n)               # long tail
    assert np.corrcoef(np.log(n), np.log(k))[0, 1] > 0.3
    # ids: Kaldi-style, speaker-prefixed, unique, C-sorted; speakers and sessions consistent with them
    utts = list(c.utts)
    assert utts == sorted(utts, key=str.encode) and len(set(utts)) == len(utts)
    head = zip(utts[:500], c.speakers[:500], c.sessions[:500], strict=True)
    assert all(u.startswith(c.speaker_ids[s] + "-") and u.startswith(c.session_ids[k] + "-u")
               for u, s, k in head)
    assert c.counts()["utterances"] == n.sum() and c.counts()["sessions_per_speaker"]["min"] >= 2


def test_tail_zero_gives_exact_counts(model: SimModel) -> None:
    c = sample(model, 40, 20, 4, 0.5, tail=0.0, seed=1, views=False)
    assert (np.bincount(c.speakers) == 20).all()
    assert (np.bincount(c.speakers[np.unique(c.sessions, return_index=True)[1]]) == 4).all()
    assert c.utts[0] == "sim00000-s000-u0000"


def test_vox2_preset_and_apportion(model: SimModel) -> None:
    shape = vox2_shape(0.01)
    assert shape == dict(VOX2, num_speakers=60)
    c = sample(model, **shape, seed=0, views=False)
    assert c.num_utts == round(60 * 182.2) and len(c.session_ids) == round(60 * 24.3)
    with pytest.raises(DataError, match="scale"):
        vox2_shape(0)
    a = apportion(100, np.array([1.0, 1.0, 8.0]), 10, np.array([50, 50, 50]))
    assert a.sum() == 100 and a.max() <= 50 and a.min() >= 10


@pytest.mark.parametrize("kw, msg", [
    (dict(session_share=1.5), "session share"), (dict(num_speakers=0), "number of speakers"),
    (dict(utts_per_speaker=5, min_utts=6), "below the minimum"),
    (dict(sessions_per_speaker=30, utts_per_speaker=20), "sessions per speaker"),
    (dict(tail=-1), "tail")])
def test_bad_arguments(model: SimModel, kw: dict, msg: str) -> None:
    args = dict(num_speakers=10, utts_per_speaker=20, sessions_per_speaker=2) | kw
    with pytest.raises(DataError, match=msg):
        sample(model, **args)


# (c) determinism


def test_seed_determinism(model: SimModel, tmp_path: Path) -> None:
    a = sample(model, 80, 25, 5, 0.5, tail=0.5, seed=7)
    b = sample(model, 80, 25, 5, 0.5, tail=0.5, seed=7)
    for f in ("vectors", "views", "utts", "speakers", "sessions", "session_ids"):
        assert np.array_equal(getattr(a, f), getattr(b, f)), f
    # Smaller blocks draw the same numbers; the float32 products agree to rounding only (BLAS may sum a
    # 97-row block in another order than a 2,000-row one, depending on the CPU's kernels).
    small_chunks = sample(model, 80, 25, 5, 0.5, tail=0.5, seed=7, chunk=97)
    np.testing.assert_allclose(small_chunks.vectors, a.vectors, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(small_chunks.views, a.views, rtol=1e-5, atol=1e-5)
    assert not np.array_equal(small_chunks.vectors[:100], sample(model, 80, 25, 5, 0.5, seed=8).vectors[:100])
    no_views = sample(model, 80, 25, 5, 0.5, tail=0.5, seed=7, views=False)
    assert np.array_equal(no_views.vectors, a.vectors)    # clean vectors do not depend on the views
    other = sample(model, 80, 25, 5, 0.5, tail=0.5, seed=8)
    assert other.num_utts != a.num_utts or not np.array_equal(other.vectors, a.vectors)
    assert not np.array_equal(other.vectors[:100], a.vectors[:100])
    for fmt in ("ark", "npy"):
        write_corpus(a, tmp_path / f"a_{fmt}", fmt)
        write_corpus(b, tmp_path / f"b_{fmt}", fmt)
        da, db = tmp_path / f"a_{fmt}", tmp_path / f"b_{fmt}"
        files = sorted(p.relative_to(da) for p in da.rglob("*") if p.is_file())
        assert files == sorted(p.relative_to(db) for p in db.rglob("*") if p.is_file())
        assert not [f for f in files if f.name.endswith(".tmp")]
        for rel_path in files:
            x, y = (da / rel_path).read_bytes(), (db / rel_path).read_bytes()
            if rel_path.suffix == ".scp":                 # names its ark by absolute path
                x = x.replace(str(da.resolve()).encode(), b"D")
                y = y.replace(str(db.resolve()).encode(), b"D")
            assert x == y, rel_path


# (d) session share


@pytest.mark.parametrize("share", [0.25, 0.7])
def test_session_share(model: SimModel, share: float) -> None:
    """The nested-ANOVA share of within-speaker variance explained by sessions equals s (measured spread
    about ±0.003 at this size; tolerance 0.02)."""
    c = sample(model, 400, 40, 8, share, tail=0.3, seed=11, views=False)
    assert abs(session_share_estimate(c.vectors, c.speakers, c.sessions) - share) < 0.02
    # the total within-speaker covariance stays W whatever the share
    f = fit_model(c.vectors, c.speakers, sessions=c.sessions)
    assert rel(f.within, model.within) < 0.1


# (e) CLI round trip


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(CLI), *map(str, args)], capture_output=True, text=True)


def test_cli_round_trip(model: SimModel, tmp_path: Path) -> None:
    real = tmp_path / "real"                  # an i-vector dir as stage 5 writes one, with its aug copies
    write_corpus(sample(model, 60, 15, 1, 0.0, tail=0.0, seed=2), real)
    r = run_cli("fit", "--aug-dir", real / "aug", "--utt2uniq", real / "aug" / "utt2uniq", real,
                real / "utt2spk", tmp_path / "m.npz")
    assert r.returncode == 0, r.stderr
    assert "60 speakers" in r.stdout and "view noise" in r.stdout and "view reverb" in r.stdout
    m = SimModel.load(tmp_path / "m.npz")
    assert m.view_types == ["noise", "reverb"] and m.num_utts == 900

    out = tmp_path / "sim"
    r = run_cli("sample", "--num-speakers", 30, "--utts-per-speaker", 12, "--sessions-per-speaker", 3,
                "--seed", 4, tmp_path / "m.npz", out)
    assert r.returncode == 0, r.stderr
    keys, x = read_vectors(out)                                       # stage 6's reader
    assert x.shape == (360, model.dim) and keys == sorted(keys, key=str.encode)
    u2s = read_map(out / "utt2spk")
    assert set(u2s) == set(keys) and len(set(u2s.values())) == 30
    assert len(read_map(out / "utt2sess")) == 360
    spk2utt = [ln.split() for ln in (out / "spk2utt").read_text().splitlines()]
    assert sorted(u for row in spk2utt for u in row[1:]) == sorted(keys)
    assert all(u2s[u] == row[0] for row in spk2utt for u in row[1:])
    types, views, present = read_views(keys, x, out / "aug", out / "aug" / "utt2uniq")
    assert types == ["noise", "reverb"] and views.shape == (2, 360, model.dim) and present.all()
    assert read_views(keys, x, out / "aug")[0] == types                # <utt>-<type> names alone suffice
    meta = json.loads((out / "sim.json").read_text())
    assert meta["params"]["seed"] == 4 and meta["counts"]["utterances"] == 360
    assert meta["model"] == str((tmp_path / "m.npz").resolve())

    r = run_cli("sample", "--scale", 0.005, "--format", "npy", "--no-views", tmp_path / "m.npz",
                tmp_path / "npy")
    assert r.returncode == 0, r.stderr
    keys, x = read_vectors(tmp_path / "npy" / "vectors.npy")
    assert len(keys) == round(30 * 182.2) and not (tmp_path / "npy" / "aug").exists()


def test_cli_bad_arguments(tmp_path: Path, model: SimModel) -> None:
    model.save(tmp_path / "m.npz")
    r = run_cli("sample", "--session-share", 1.5, tmp_path / "m.npz", tmp_path / "out")
    assert r.returncode == 1 and "session share must lie in [0, 1], got 1.5" in r.stderr
    assert not (tmp_path / "out").exists()                        # checked before any work
    r = run_cli("sample", "--num-speakers", 3, "--scale", 0.1, tmp_path / "m.npz", tmp_path / "out")
    assert r.returncode == 2 and "not allowed with" in r.stderr
    r = run_cli("sample", tmp_path / "absent.npz", tmp_path / "out")
    assert r.returncode == 1 and "no such model file" in r.stderr
    (tmp_path / "u2s").write_text("a x\n")
    r = run_cli("fit", tmp_path / "absent_dir", tmp_path / "u2s", tmp_path / "m2.npz")
    assert r.returncode == 1 and "no such file" in r.stderr
