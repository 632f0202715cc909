"""A VoxCeleb2-shaped i-vector simulator: a vector-level test bed for the clustering stage (stage 6).

Why: the deep clustering methods (IMSAT, CIMC, CAMSAT) were designed on VoxCeleb2-dev (5,994 speakers,
145,569 sessions, 1,092,009 utterances: about 182 utterances and 24 sessions per speaker, long-tailed),
while the recipe's real corpora have about 20 utterances of one session per speaker. This module fits a
Gaussian speaker → session → utterance model to a real i-vector set and samples corpora of any shape
from it, with the augmented "views" CAMSAT uses, so that stage 6 can be run and timed at that shape.

**Model** (:class:`SimModel`, fitted by :func:`fit_model`): the two-covariance (PLDA) model

    x = μ + y_spk + e,   y_spk ~ N(0, B),   e ~ N(0, W),

with, per augmentation type t (noise, babble, reverb, ...), the shift of an augmented copy from its clean
utterance, ``x_t − x ~ N(m_t, S_t)`` (independent of x: the marginal shift distribution; real shifts are
partly correlated with x, which this model ignores).

Estimators, for speakers s = 1..S with n_s utterances, speaker means x̄_s and N = Σ n_s:

- μ = (1/S) Σ_s x̄_s, the unweighted mean of the speaker means;
- W = Σ_s Σ_i (x_si − x̄_s)(x_si − x̄_s)ᵀ / (N − S), the pooled within-speaker covariance (unbiased);
- B = C − W · (1/S) Σ_s 1/n_s with C = Σ_s (x̄_s − μ)(x̄_s − μ)ᵀ / (S − 1): the covariance of the
  speaker means corrected for the finite number of utterances per speaker. Since Cov(x̄_s) = B + W/n_s,
  E[C] = B + W · mean_s(1/n_s), so this method-of-moments estimate is unbiased for unequal counts too.
  It is not clipped: with few speakers (100 speakers in 100 dimensions) it has negative eigenvalues,
  which sampling sets to 0 (:func:`psd_sqrt`). With session labels (``fit_model(sessions=...)``) the
  correction uses nested session/utterance moments instead (see :func:`fit_model`).
- m_t, S_t: the mean and (ddof 1) covariance of ``view − clean`` over the utterances having a type-t copy.

**Sampling** (:func:`sample`): speaker means ~ N(μ, B⁺) (B⁺: B with negative eigenvalues set to 0,
whose trace exceeds B's when B is indefinite; :func:`summary` gives both); per speaker an utterance count
and a session count; per session an offset ~ N(0, s·W) and per utterance a residual ~ N(0, (1 − s)·W),
``s = session_share``: the fraction of within-speaker variance shared by the utterances of one session.
It cannot be fitted from one-session corpora, hence a parameter; where a speaker has one session its
offset acts as extra speaker variance, so ``session_share = 0`` reproduces a one-session corpus. The
fitted W is the total within-speaker covariance, so the split leaves it unchanged. Views:
``x + m_t + N(0, S_t)`` per type.

**Counts**: utterances per speaker are a lognormal shape censored at a minimum and rescaled to the
requested mean: ``n_s = clip(c · exp(σ z_s), min_utts, ∞)`` with z_s ~ N(0, 1) and c chosen so that
Σ n_s = round(S × utts_per_speaker), rounded by largest remainders (so the mean is exact; σ = ``tail``;
``tail = 0`` gives equal counts). σ = 0.5 (coefficient of variation ≈ 0.53) is the default: a guess at
VoxCeleb2's spread, not fitted to its list. Session counts likewise (between ``min_sessions`` and n_s,
mean ``sessions_per_speaker``), with z correlated to the utterance count's z (``count_corr``): speakers
with many utterances have many sessions. Utterances go to sessions with probabilities ∝ exp(σ z_k) (one
utterance per session first, so none is empty).

Utterance ids are Kaldi-style and prefixed with the speaker: ``sim00017-s003-u0012`` (speaker, session
within speaker, utterance within session; fixed widths, so the rows are in C-locale order).
:func:`write_corpus` writes a directory stage 6 reads directly (``ivector.scp`` + ark, or ``vectors.npy``
+ ``vectors.keys``; ``utt2spk``, ``spk2utt``, ``utt2sess``; ``aug/`` with the views named ``<utt>-<type>``
and ``aug/utt2uniq``, the layout of stage 5's ``ivectors_<train>_aug``; ``sim.json``).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .tables import DataError, atomic_path

#: VoxCeleb2-dev's shape: 5,994 speakers, 1,092,009 utterances (182.2 per speaker), 145,569 sessions
#: (videos; 24.3 per speaker).
VOX2 = dict(num_speakers=5994, utts_per_speaker=182.2, sessions_per_speaker=24.3)

CHUNK = 65536  # utterances per block of Gaussian draws (bounds the temporary memory)


def vox2_shape(scale: float = 1.0) -> dict:
    """The VoxCeleb2 preset with the number of speakers scaled (at least 1), per-speaker counts kept."""
    if not scale > 0:
        raise DataError(f"scale must be > 0, got {scale}")
    return dict(VOX2, num_speakers=max(1, round(VOX2["num_speakers"] * scale)))


@dataclass
class SimModel:
    """The fitted Gaussian model (see the module docstring). ``.npz`` keys: ``mean`` (d), ``between``
    (d × d), ``within`` (d × d), ``view_types`` (V strings), ``shift_mean`` (V × d), ``shift_cov``
    (V × d × d), ``num_speakers``, ``num_utts``, ``view_counts`` (V), ``source`` (a string)."""

    mean: np.ndarray
    between: np.ndarray
    within: np.ndarray
    view_types: list[str] = field(default_factory=list)
    shift_mean: np.ndarray | None = None
    shift_cov: np.ndarray | None = None
    num_speakers: int = 0
    num_utts: int = 0
    view_counts: list[int] = field(default_factory=list)
    source: str = ""

    def __post_init__(self) -> None:
        d = len(self.mean)
        if self.shift_mean is None:
            self.shift_mean = np.zeros((0, d))
        if self.shift_cov is None:
            self.shift_cov = np.zeros((0, d, d))
        if self.between.shape != (d, d) or self.within.shape != (d, d):
            raise DataError(f"model: B {self.between.shape} and W {self.within.shape} for dimension {d}")
        v = len(self.view_types)
        if self.shift_mean.shape != (v, d) or self.shift_cov.shape != (v, d, d):
            raise DataError(f"model: {v} view types but shift statistics of shapes "
                            f"{self.shift_mean.shape}, {self.shift_cov.shape}")

    @property
    def dim(self) -> int:
        return len(self.mean)

    def save(self, path: str | os.PathLike) -> None:
        """Write the ``.npz`` atomically."""
        with atomic_path(path) as tmp, open(tmp, "wb") as f:
            np.savez(f, mean=self.mean, between=self.between, within=self.within,
                     view_types=np.array(self.view_types, dtype=str), shift_mean=self.shift_mean,
                     shift_cov=self.shift_cov, num_speakers=self.num_speakers, num_utts=self.num_utts,
                     view_counts=np.array(self.view_counts, dtype=np.int64), source=np.array(self.source))

    @classmethod
    def load(cls, path: str | os.PathLike) -> SimModel:
        p = Path(path)
        if not p.is_file():
            raise DataError(f"{p}: no such model file")
        try:
            with np.load(p, allow_pickle=False) as z:
                return cls(mean=z["mean"], between=z["between"], within=z["within"],
                           view_types=[str(t) for t in z["view_types"]], shift_mean=z["shift_mean"],
                           shift_cov=z["shift_cov"], num_speakers=int(z["num_speakers"]),
                           num_utts=int(z["num_utts"]), view_counts=[int(c) for c in z["view_counts"]],
                           source=str(z["source"]))
        except (KeyError, ValueError, OSError) as e:
            raise DataError(f"{p}: not a simulator model ({e})") from e


def summary(model: SimModel) -> dict:
    """Figures for a model: dimension, data size, traces of B, of B⁺ (what is sampled) and of W, the
    ratio tr B / tr W, B's negative eigenvalues, and per view type the norm of the mean shift and the
    RMS shift √tr S_t."""
    tb, tw = float(np.trace(model.between)), float(np.trace(model.within))
    out = {"dim": model.dim, "num_utts": model.num_utts, "num_speakers": model.num_speakers,
           "trace_between": tb,
           "trace_between_sampled": float(np.clip(np.linalg.eigvalsh(model.between), 0, None).sum()),
           "trace_within": tw,
           "between_within_ratio": tb / tw if tw > 0 else float("inf"),
           "between_negative_eigenvalues": int((np.linalg.eigvalsh(model.between) < 0).sum()),
           "views": {}}
    for t, m, s, c in zip(model.view_types, model.shift_mean, model.shift_cov,
                          model.view_counts or [0] * len(model.view_types), strict=True):
        out["views"][t] = {"copies": c, "mean_shift_norm": float(np.linalg.norm(m)),
                           "shift_rms": float(np.sqrt(max(np.trace(s), 0.0)))}
    return out


def _groups(X: np.ndarray, lab: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Counts, means and the scatter matrix Σ (x − mean)(x − mean)ᵀ of the groups ``lab`` (0..G−1)."""
    cnt = np.bincount(lab)
    sums = np.zeros((len(cnt), X.shape[1]))
    np.add.at(sums, lab, X)
    means = sums / cnt[:, None]
    R = X - means[lab]
    return cnt, means, R.T @ R


def fit_model(X: np.ndarray, speakers: np.ndarray | list, views: np.ndarray | None = None,
              view_types: list[str] | None = None, present: np.ndarray | None = None,
              sessions: np.ndarray | list | None = None, source: str = "") -> SimModel:
    """Fit :class:`SimModel` to vectors ``X`` (N × d) with speaker labels ``speakers`` (N, any hashable
    type); estimators in the module docstring. ``views`` (V × N × d): augmented copies of the rows of X,
    one type per ``view_types`` entry; ``present`` (V × N) marks the real copies (default: all finite
    rows), as :func:`sslsv.cluster.inputs.read_views` returns them (read with ``how="none"``).

    ``sessions`` (N labels, unique across speakers), when known, make the B estimate unbiased for data with
    session effects too (a sample with ``session_share > 0``, VoxCeleb's videos): nested moments give the
    within-session covariance W_e = SS_within-session / (N − K) and the session covariance
    W_a = (SS_within-speaker − W_e (N − S)) / Σ_s (n_s − Σ_k m_sk² / n_s), W = W_a + W_e, and
    B = C − W_a · mean_s(Σ_k m_sk² / n_s²) − W_e · mean_s(1 / n_s) (sessions of sizes m_sk). Without
    them every utterance counts as its own session (W_a = 0), and session effects inflate B."""
    X = np.asarray(X, dtype=np.float64)
    if X.ndim != 2 or len(X) == 0:
        raise DataError(f"expected an (N, dim) matrix of vectors, got shape {X.shape}")
    spk = np.asarray(speakers)
    if spk.shape != (len(X),):
        raise DataError(f"{len(spk)} speaker labels for {len(X)} vectors")
    _, lab = np.unique(spk, return_inverse=True)
    cnt, means, ss_t = _groups(X, lab)
    n = cnt.astype(np.float64)
    S, N, d = len(n), len(X), X.shape[1]
    if S < 2 or N <= S:
        raise DataError(f"need at least 2 speakers and more vectors than speakers (got {S} speakers, "
                        f"{N} vectors)")
    W = ss_t / (N - S)
    corr_a, W_a = np.zeros(S), np.zeros((d, d))
    if sessions is not None:
        ses = np.asarray(sessions)
        if ses.shape != (N,):
            raise DataError(f"{len(ses)} session labels for {N} vectors")
        _, slab = np.unique(ses, return_inverse=True)
        m, _, ss_e = _groups(X, slab)
        K = len(m)
        owner = np.zeros(K, dtype=np.int64)
        owner[slab] = lab
        if np.any(owner[slab] != lab):
            raise DataError("a session label is shared by utterances of different speakers")
        sum_m2 = np.bincount(owner, weights=m.astype(np.float64) ** 2, minlength=S)
        denom = float((n - sum_m2 / n).sum())
        if N > K and denom > 0:        # else one session per speaker or one utterance per session
            W_e = ss_e / (N - K)
            W_a = (ss_t - W_e * (N - S)) / denom
            W = W_a + W_e
            corr_a = sum_m2 / n**2
    W_e = W - W_a
    mu = means.mean(axis=0)
    D = means - mu
    B = D.T @ D / (S - 1) - W_a * float(np.mean(corr_a)) - W_e * float(np.mean(1.0 / n))
    B, W = (B + B.T) / 2, (W + W.T) / 2
    types = list(view_types or [])
    smean, scov, counts = [], [], []
    if views is not None:
        views = np.asarray(views)
        if views.ndim != 3 or views.shape[1:] != X.shape or len(types) != len(views):
            raise DataError(f"views of shape {views.shape} for vectors {X.shape} and {len(types)} types")
        for v in range(len(views)):
            ok = (np.asarray(present[v], dtype=bool) if present is not None
                  else np.isfinite(views[v]).all(axis=1))
            if ok.sum() < 2:
                raise DataError(f"view type {types[v]!r}: {int(ok.sum())} copies, need at least 2")
            diff = np.asarray(views[v][ok], dtype=np.float64) - X[ok]
            smean.append(diff.mean(axis=0))
            scov.append(np.cov(diff, rowvar=False, ddof=1).reshape(d, d))
            counts.append(int(ok.sum()))
    elif types:
        raise DataError("view types given without views")
    return SimModel(mean=mu, between=B, within=W, view_types=types,
                    shift_mean=np.array(smean).reshape(len(types), d),
                    shift_cov=np.array(scov).reshape(len(types), d, d),
                    num_speakers=S, num_utts=N, view_counts=counts, source=source)


def psd_sqrt(C: np.ndarray) -> np.ndarray:
    """A factor L with L Lᵀ = C⁺, C's eigenvalues clipped at 0 (C may be singular or slightly
    indefinite, as an estimated B is). ``z @ L.T`` for z ~ N(0, I) is then N(0, C⁺)."""
    lam, V = np.linalg.eigh((C + C.T) / 2)
    return V * np.sqrt(np.clip(lam, 0.0, None))


@dataclass
class SimCorpus:
    """A sampled corpus. ``vectors`` (N × d, float32) in ``utts`` order (C-sorted); ``speakers`` (N,
    int: index into ``speaker_ids``); ``sessions`` (N, int: global session index into ``session_ids``);
    ``views`` (V × N × d float32, or None) with ``view_types``."""

    vectors: np.ndarray
    utts: np.ndarray
    speakers: np.ndarray
    sessions: np.ndarray
    speaker_ids: np.ndarray
    session_ids: np.ndarray
    view_types: list[str]
    views: np.ndarray | None
    params: dict

    @property
    def num_utts(self) -> int:
        return len(self.utts)

    def counts(self) -> dict:
        per_spk = np.bincount(self.speakers, minlength=len(self.speaker_ids))
        sess_per_spk = np.bincount(self.speakers[np.unique(self.sessions, return_index=True)[1]],
                                   minlength=len(self.speaker_ids))
        return {"speakers": len(self.speaker_ids), "sessions": len(self.session_ids),
                "utterances": self.num_utts, "dim": int(self.vectors.shape[1]),
                "utts_per_speaker": {"mean": float(per_spk.mean()), "min": int(per_spk.min()),
                                     "median": float(np.median(per_spk)), "max": int(per_spk.max())},
                "sessions_per_speaker": {"mean": float(sess_per_spk.mean()), "min": int(sess_per_spk.min()),
                                         "median": float(np.median(sess_per_spk)),
                                         "max": int(sess_per_spk.max())}}


def apportion(total: int, weights: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """Integers n_i in [lo_i, hi_i] summing to ``total``, as close as possible to clip(c·w_i, lo_i, hi_i)
    (c found by bisection so the continuous shares sum to ``total``; rounded by largest remainders, ties
    to the lower index)."""
    w = np.asarray(weights, dtype=np.float64)
    lo = np.broadcast_to(np.asarray(lo, dtype=np.float64), w.shape)
    hi = np.broadcast_to(np.asarray(hi, dtype=np.float64), w.shape)
    if not lo.sum() <= total <= hi.sum():
        raise DataError(f"cannot share {total} among {len(w)} between {int(lo.sum())} and {hi.sum():.0f}")
    a, b = 0.0, float(np.max(np.minimum(hi, total) / w)) + 1.0
    for _ in range(200):
        c = (a + b) / 2
        if np.clip(c * w, lo, hi).sum() < total:
            a = c
        else:
            b = c
    share = np.clip(b * w, lo, hi)
    out = np.floor(share).astype(np.int64)
    out = np.maximum(out, lo.astype(np.int64))
    rem = int(total - out.sum())
    if rem > 0:
        room = out < hi
        frac = np.where(room, share - out, -np.inf)
        order = np.lexsort((np.arange(len(w)), -frac))[:rem]
        out[order] += 1
    elif rem < 0:
        over = np.where(out > lo, out - share, -np.inf)
        order = np.lexsort((np.arange(len(w)), -over))[:-rem]
        out[order] -= 1
    return out


def check_sample_args(num_speakers: int, utts_per_speaker: float, sessions_per_speaker: float,
                      session_share: float, tail: float, min_utts: int, min_sessions: int,
                      count_corr: float) -> None:
    """Raise :class:`DataError` naming the first invalid argument of :func:`sample`."""
    if num_speakers < 1:
        raise DataError(f"number of speakers must be >= 1, got {num_speakers}")
    if min_sessions < 1:
        raise DataError(f"min sessions must be >= 1, got {min_sessions}")
    if min_utts < min_sessions:
        raise DataError(f"min utterances ({min_utts}) below min sessions ({min_sessions}): every session "
                        "needs an utterance")
    if not utts_per_speaker >= min_utts:
        raise DataError(f"utterances per speaker ({utts_per_speaker}) below the minimum ({min_utts})")
    if not min_sessions <= sessions_per_speaker <= utts_per_speaker:
        raise DataError(f"sessions per speaker ({sessions_per_speaker}) must lie between the minimum "
                        f"({min_sessions}) and the utterances per speaker ({utts_per_speaker})")
    if not 0.0 <= session_share <= 1.0:
        raise DataError(f"session share must lie in [0, 1], got {session_share}")
    if not 0.0 <= tail <= 5.0:
        raise DataError(f"tail (lognormal sigma) must lie in [0, 5], got {tail}")
    if not -1.0 <= count_corr <= 1.0:
        raise DataError(f"count correlation must lie in [-1, 1], got {count_corr}")


def default_min_utts(utts_per_speaker: float, min_sessions: int = 1) -> int:
    """The default minimum utterances per speaker: min(10, ⌊U⌋), at least ``min_sessions``."""
    return max(min_sessions, min(10, int(np.floor(utts_per_speaker))))


def sample(model: SimModel, num_speakers: int = VOX2["num_speakers"],
           utts_per_speaker: float = VOX2["utts_per_speaker"],
           sessions_per_speaker: float = VOX2["sessions_per_speaker"], session_share: float = 0.5,
           tail: float = 0.5, seed: int = 0, min_utts: int | None = None, min_sessions: int = 1,
           count_corr: float = 0.7, views: bool = True, chunk: int = CHUNK) -> SimCorpus:
    """Sample a corpus from ``model`` (module docstring). ``min_utts`` defaults to min(10, ⌊U⌋).
    Deterministic for ``seed``: counts, speakers, sessions, utterances and each view type draw from
    their own streams of ``np.random.SeedSequence(seed)``, so the clean vectors do not depend on
    ``views``. Vectorised; Gaussian draws in blocks of ``chunk`` utterances (the draws do not depend on
    ``chunk``: numpy's generator fills blocks from one sequential stream; the float32 products do only to
    rounding, as BLAS may order a block's sums by its size; a test checks both)."""
    if min_utts is None:
        min_utts = default_min_utts(utts_per_speaker, min_sessions)
    check_sample_args(num_speakers, utts_per_speaker, sessions_per_speaker, session_share, tail,
                      min_utts, min_sessions, count_corr)
    S, d = int(num_speakers), model.dim
    r_count, r_assign, r_spk, r_sess, r_utt, *r_views = (
        np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(5 + len(model.view_types)))

    # counts per speaker: utterances, then sessions (correlated shape, at most one per utterance)
    z_u = r_count.standard_normal(S)
    z_m = count_corr * z_u + np.sqrt(1 - count_corr**2) * r_count.standard_normal(S)
    n_utt = apportion(round(S * utts_per_speaker), np.exp(tail * z_u), min_utts, np.inf)
    n_sess = apportion(round(S * sessions_per_speaker), np.exp(tail * z_m), min_sessions, n_utt)
    K, N = int(n_sess.sum()), int(n_utt.sum())

    # utterances to sessions: the first n_sess[s] utterances one per session, the rest ∝ exp(σ z_k)
    spk = np.repeat(np.arange(S), n_utt)
    u_start = np.concatenate([[0], np.cumsum(n_utt)[:-1]])
    s_start = np.concatenate([[0], np.cumsum(n_sess)[:-1]])
    pos = np.arange(N) - u_start[spk]
    sess_spk = np.repeat(np.arange(S), n_sess)
    w = np.exp(tail * r_assign.standard_normal(K))
    cum = np.cumsum(w)
    lo_c = np.concatenate([[0.0], cum])[s_start]
    hi_c = cum[s_start + n_sess - 1]
    r = lo_c[spk] + r_assign.random(N) * (hi_c - lo_c)[spk]
    drawn = np.clip(np.searchsorted(cum, r, side="right"), s_start[spk], (s_start + n_sess - 1)[spk])
    sess = np.where(pos < n_sess[spk], s_start[spk] + pos, drawn)
    order = np.argsort(sess, kind="stable")       # by speaker, then session (sessions are numbered so)
    sess = sess[order]
    spk = sess_spk[sess]
    first = np.concatenate([[0], np.cumsum(np.bincount(sess, minlength=K))[:-1]])
    in_sess = np.arange(N) - first[sess]

    # ids, fixed widths so that string order is (speaker, session, utterance) order
    ws = max(5, len(str(S - 1)))
    wk = max(3, len(str(int(n_sess.max()) - 1)))
    wu = max(4, len(str(int(in_sess.max()))))
    spk_ids = np.char.add("sim", np.char.zfill(np.arange(S).astype(str), ws))
    kstr = np.char.add("-s", np.char.zfill(np.arange(int(n_sess.max())).astype(str), wk))
    ustr = np.char.add("-u", np.char.zfill(np.arange(int(in_sess.max()) + 1).astype(str), wu))
    sess_ids = np.strings.add(spk_ids[sess_spk], kstr[np.arange(K) - s_start[sess_spk]])
    utts = np.strings.add(sess_ids[sess], ustr[in_sess])

    # vectors
    spk_mean = (model.mean + r_spk.standard_normal((S, d)) @ psd_sqrt(model.between).T).astype(np.float32)
    L_w = psd_sqrt(model.within)
    sess_mean = np.empty((K, d), dtype=np.float32)          # speaker mean + session offset
    L_s = (np.sqrt(session_share) * L_w).astype(np.float32).T
    for i in range(0, K, chunk):
        j = min(K, i + chunk)
        sess_mean[i:j] = r_sess.standard_normal((j - i, d), dtype=np.float32) @ L_s
        sess_mean[i:j] += spk_mean[sess_spk[i:j]]
    L_u = (np.sqrt(1.0 - session_share) * L_w).astype(np.float32).T
    X = np.empty((N, d), dtype=np.float32)
    for i in range(0, N, chunk):
        j = min(N, i + chunk)
        X[i:j] = r_utt.standard_normal((j - i, d), dtype=np.float32) @ L_u
        X[i:j] += sess_mean[sess[i:j]]
    del sess_mean

    V = None
    if views and model.view_types:
        V = np.empty((len(model.view_types), N, d), dtype=np.float32)
        for v, rng in enumerate(r_views):
            L_t = psd_sqrt(model.shift_cov[v]).astype(np.float32).T
            m_t = model.shift_mean[v].astype(np.float32)
            for i in range(0, N, chunk):
                j = min(N, i + chunk)
                V[v, i:j] = rng.standard_normal((j - i, d), dtype=np.float32) @ L_t
                V[v, i:j] += X[i:j]
                V[v, i:j] += m_t
    params = dict(num_speakers=S, utts_per_speaker=float(utts_per_speaker),
                  sessions_per_speaker=float(sessions_per_speaker), session_share=float(session_share),
                  tail=float(tail), seed=int(seed), min_utts=int(min_utts), min_sessions=int(min_sessions),
                  count_corr=float(count_corr), views=bool(V is not None))
    return SimCorpus(vectors=X, utts=utts, speakers=spk, sessions=sess, speaker_ids=spk_ids,
                     session_ids=sess_ids, view_types=list(model.view_types) if V is not None else [],
                     views=V, params=params)


def session_share_estimate(X: np.ndarray, speakers: np.ndarray, sessions: np.ndarray) -> float:
    """The fraction of within-speaker variance explained by sessions, tr W_a / tr(W_a + W_e), with the
    nested moment estimates of :func:`fit_model` (unbiased for unequal session sizes)."""
    X = np.asarray(X, dtype=np.float64)
    _, spk = np.unique(speakers, return_inverse=True)
    _, ses = np.unique(sessions, return_inverse=True)
    n, _, ss_t = _groups(X, spk)
    m, _, ss_e = _groups(X, ses)
    N, K, S = len(X), len(m), len(n)
    owner = np.zeros(K, dtype=np.int64)
    owner[ses] = spk
    sum_m2 = np.bincount(owner, weights=m.astype(np.float64) ** 2, minlength=S)
    sig_e = float(np.trace(ss_e)) / (N - K)
    sig_a = (float(np.trace(ss_t)) - sig_e * (N - S)) / float((n - sum_m2 / n).sum())
    return sig_a / (sig_a + sig_e)


ROWS = 100000  # utterances per block when writing


def _write_text(path: Path, n: int, rows) -> None:
    """Write the lines ``rows(i, j)`` gives for utterances i..j−1, block by block, atomically."""
    with atomic_path(path) as tmp, open(tmp, "w", encoding="utf-8") as f:
        for i in range(0, n, ROWS):
            f.write("\n".join(rows(i, min(n, i + ROWS))))
            f.write("\n")


def _write_npy(path: Path, shape: tuple[int, int], blocks) -> None:
    """Write the (keys, matrix) ``blocks`` one after another as a float32 ``.npy``, atomically (plain
    writes, not a memory map, so the written pages do not count in the process's memory)."""
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        np.lib.format.write_array_header_1_0(f, {"descr": np.lib.format.dtype_to_descr(np.dtype("<f4")),
                                                 "fortran_order": False, "shape": shape})
        rows = 0
        for _, block in blocks:
            f.write(np.ascontiguousarray(block, dtype="<f4").tobytes())
            rows += len(block)
        if rows != shape[0]:
            raise DataError(f"{path}: wrote {rows} rows, expected {shape[0]}")


def _write_ark(scp: Path, ark: Path, blocks) -> None:
    """Write the (keys, matrix) ``blocks`` as a Kaldi ark + scp (kaldiio), atomically."""
    import kaldiio

    ark = ark.resolve()
    with atomic_path(scp) as tscp, atomic_path(ark) as tark:  # ark renamed first
        with kaldiio.WriteHelper(f"ark,scp:{tark},{tscp}") as w:
            for keys, block in blocks:
                for k, v in zip(keys, block, strict=True):
                    w(str(k), v)
        Path(tscp).write_text(Path(tscp).read_text().replace(str(tark), str(ark)))


def _join(*cols: np.ndarray) -> np.ndarray:
    out = cols[0]
    for c in cols[1:]:
        out = np.strings.add(np.strings.add(out, " "), c)
    return out


def write_corpus(corpus: SimCorpus, out_dir: str | os.PathLike, fmt: str = "ark",
                 info: dict | None = None) -> dict:
    """Write ``corpus`` as a directory stage 6 reads (module docstring); ``fmt`` ``ark`` (``ivector.scp``
    + ``ivector.ark``, the scp naming the ark by absolute path) or ``npy`` (``vectors.npy`` +
    ``vectors.keys``). ``info`` is merged into ``sim.json``, whose ``files`` are paths relative to
    ``out_dir`` (``vectors``: what to give stage 6; ``views``: its ``--views``). Returns ``sim.json``'s
    content. Written in blocks of utterances (the text tables too), each file atomically."""
    if fmt not in ("ark", "npy"):
        raise DataError(f"unknown format {fmt!r} (ark, npy)")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    X, utts, N, d = corpus.vectors, corpus.utts, corpus.num_utts, corpus.vectors.shape[1]
    spk_ids, sess_ids = corpus.speaker_ids, corpus.session_ids

    def clean_blocks():
        for i in range(0, N, ROWS):
            yield utts[i:i + ROWS], X[i:i + ROWS]

    if fmt == "ark":
        _write_ark(out / "ivector.scp", out / "ivector.ark", clean_blocks())
        vec_path = "."
    else:
        _write_npy(out / "vectors.npy", (N, d), clean_blocks())
        _write_text(out / "vectors.keys", N, lambda i, j: utts[i:j])
        vec_path = "vectors.npy"
    _write_text(out / "utt2spk", N, lambda i, j: _join(utts[i:j], spk_ids[corpus.speakers[i:j]]))
    _write_text(out / "utt2sess", N, lambda i, j: _join(utts[i:j], sess_ids[corpus.sessions[i:j]]))
    starts = np.concatenate([[0], np.cumsum(np.bincount(corpus.speakers, minlength=len(spk_ids)))])
    _write_text(out / "spk2utt", len(spk_ids), lambda i, j: [
        f"{spk_ids[s]} {' '.join(utts[starts[s]:starts[s + 1]])}" for s in range(i, j)])
    files = {"vectors": vec_path, "utt2spk": "utt2spk", "utt2sess": "utt2sess", "spk2utt": "spk2utt"}
    if corpus.views is not None:
        aug = out / "aug"
        aug.mkdir(exist_ok=True)
        V = len(corpus.view_types)
        suffix = np.array([f"-{t}" for t in corpus.view_types])       # types sorted: keys stay C-sorted
        if list(suffix) != sorted(suffix, key=str.encode):
            raise DataError(f"view types {corpus.view_types} are not in C order")

        def aug_keys(i: int, j: int) -> np.ndarray:                   # utterance-major, type-minor
            return np.strings.add(np.repeat(utts[i:j], V), np.tile(suffix, j - i))

        def aug_blocks():
            for i in range(0, N, ROWS // V):
                j = min(N, i + ROWS // V)
                yield aug_keys(i, j), corpus.views[:, i:j].transpose(1, 0, 2).reshape(-1, d)

        if fmt == "ark":
            _write_ark(aug / "ivector.scp", aug / "ivector.ark", aug_blocks())
            files["views"] = "aug"
        else:
            _write_npy(aug / "vectors.npy", (N * V, d), aug_blocks())
            _write_text(aug / "vectors.keys", N, aug_keys)
            files["views"] = "aug/vectors.npy"
        _write_text(aug / "utt2uniq", N, lambda i, j: _join(aug_keys(i, j), np.repeat(utts[i:j], V)))
        _write_text(aug / "utt2spk", N, lambda i, j: _join(aug_keys(i, j),
                                                           np.repeat(spk_ids[corpus.speakers[i:j]], V)))
        files["utt2uniq"] = "aug/utt2uniq"
    meta = {"params": corpus.params, "format": fmt, "counts": corpus.counts(),
            "view_types": corpus.view_types, "files": files, **(info or {})}
    with atomic_path(out / "sim.json") as tmp:
        tmp.write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n")
    return meta
