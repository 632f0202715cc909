"""Embedding scoring helpers (docs/network.md §6.4-6.5): mean-subtracted cosine and adaptive symmetric score
normalisation (AS-norm) against a cohort of (pseudo-)speaker means.

Conventions: every vector passed to :func:`cohort_stats` and :func:`adaptive_snorm` has already had the
training mean μ subtracted and been scaled to unit length (:func:`center_normalize`), so a dot product
is the cosine score ``cos(e_a − μ, e_b − μ)``.

AS-norm (docs/network.md §6.5, after WeSpeaker): for every enrolment or test vector x, the cosines to all
cohort vectors are computed, the ``top_n`` highest kept, and μ_x, σ_x (population std, ddof 0) taken over
them; a trial with raw cosine s scores ``½[(s − μ_e)/σ_e + (s − μ_t)/σ_t]``. ``top_n ≥ cohort size``
is plain S-norm. The statistics are computed once per distinct vector (not per trial): one
(rows × cohort) matrix product per chunk of rows, then ``np.partition`` for the top N.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import scipy.sparse

from .backend import dot_scores, length_norm
from .tables import DataError

_BLOCK = 1 << 22  # cosine-matrix entries per chunk of rows (32 MiB of float64)
_TRIALS = 1 << 14  # trials per raw-scoring chunk


def speaker_means(keys: Sequence[str], x: np.ndarray, utt2spk: Mapping[str, str]
                  ) -> tuple[list[str], np.ndarray]:
    """Mean vector of each speaker's utterances: ``(speakers, means)``, speakers sorted (C order),
    ``means`` (K, dim) float64. Computed as one sparse (K × N) averaging-matrix product.

    Raises :class:`DataError` for a key with no speaker in ``utt2spk``.
    """
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 2 or len(x) != len(keys):
        raise ValueError(f"speaker_means: {len(keys)} keys but vectors of shape {x.shape}")
    if len(keys) == 0:
        raise ValueError("speaker_means: no vectors")
    labels = []
    for i, k in enumerate(keys):
        s = utt2spk.get(k)
        if s is None:
            raise DataError(f"utterance {k!r} (vector {i + 1}) has no speaker in utt2spk")
        labels.append(s)
    names, idx, counts = np.unique(np.asarray(labels), return_inverse=True, return_counts=True)
    idx = idx.ravel()
    avg = scipy.sparse.csr_array((1.0 / counts[idx], (idx, np.arange(len(keys)))),
                                 shape=(len(names), len(keys)))
    return [str(s) for s in names], np.asarray(avg @ x)


def center_normalize(x: np.ndarray, mean: np.ndarray | None) -> np.ndarray:
    """``(x − mean) / ‖x − mean‖`` row by row (float64); zero rows stay zero."""
    x = np.asarray(x, dtype=np.float64)
    return length_norm(x - mean if mean is not None else x, scaleup=False)


def cohort_stats(x: np.ndarray, cohort: np.ndarray, top_n: int, chunk: int | None = None
                 ) -> tuple[np.ndarray, np.ndarray]:
    """Mean and population std of the ``top_n`` highest cosines of each row of ``x`` (n, d) to the
    ``cohort`` (n_c, d); ``top_n ≥ n_c`` uses the whole cohort (S-norm). Rows are processed ``chunk`` at
    a time (default: about 4M cosine entries per chunk) so memory is bounded.

    Raises ValueError for ``top_n < 2`` (σ would be 0) or a row whose top cosines are all equal.
    """
    x = np.asarray(x, dtype=np.float64)
    cohort = np.asarray(cohort, dtype=np.float64)
    if x.ndim != 2 or cohort.ndim != 2 or x.shape[1] != cohort.shape[1]:
        raise ValueError(f"cohort_stats: vectors {x.shape} and cohort {cohort.shape} do not match")
    n_c = len(cohort)
    if top_n < 2 or n_c < 2:
        raise ValueError(f"AS-norm needs top_n >= 2 and a cohort of at least 2 (top_n {top_n}, cohort {n_c})")
    n = min(top_n, n_c)
    rows = chunk if chunk else max(1, _BLOCK // n_c)
    mu = np.empty(len(x))
    sd = np.empty(len(x))
    for a in range(0, len(x), rows):
        s = x[a:a + rows] @ cohort.T
        if n < n_c:
            s = np.partition(s, n_c - n, axis=1)[:, n_c - n:]
        mu[a:a + rows] = s.mean(axis=1)
        sd[a:a + rows] = s.std(axis=1)
    bad = np.flatnonzero(~(sd > 0))
    if len(bad):
        raise ValueError(f"AS-norm: the top-{n} cohort cosines of {len(bad)} vector(s) are all equal "
                         f"(first: row {int(bad[0])}); a zero or degenerate vector?")
    return mu, sd


def _used_stats(x: np.ndarray, idx: np.ndarray, cohort: np.ndarray, top_n: int, chunk: int | None
                ) -> tuple[np.ndarray, np.ndarray]:
    """Cohort statistics of the rows of ``x`` that ``idx`` uses, scattered back to ``len(x)`` (NaN
    elsewhere)."""
    used = np.unique(idx)
    mu = np.full(len(x), np.nan)
    sd = np.full(len(x), np.nan)
    mu[used], sd[used] = cohort_stats(x[used], cohort, top_n, chunk)
    return mu, sd


def adaptive_snorm(enroll: np.ndarray, test: np.ndarray, e_idx: np.ndarray, t_idx: np.ndarray,
                   cohort: np.ndarray, top_n: int, chunk: int | None = None
                   ) -> tuple[np.ndarray, np.ndarray]:
    """Raw cosine and AS-norm score of each trial ``(enroll[e_idx[i]], test[t_idx[i]])``.

    All inputs are mean-subtracted and unit-length (:func:`center_normalize`). Returns ``(raw, normed)``
    with ``normed = ½[(raw − μ_e)/σ_e + (raw − μ_t)/σ_t]``, the μ/σ of each vector's ``top_n`` highest
    cohort cosines (population std); ``top_n ≥ len(cohort)`` is S-norm. Statistics are computed once per
    distinct vector used by some trial (once in all when ``test is enroll``).
    """
    same = test is enroll
    enroll = np.asarray(enroll, dtype=np.float64)
    test = enroll if same else np.asarray(test, dtype=np.float64)
    e_idx = np.asarray(e_idx, dtype=np.int64)
    t_idx = np.asarray(t_idx, dtype=np.int64)
    if len(e_idx) != len(t_idx):
        raise ValueError(f"{len(e_idx)} enrolment but {len(t_idx)} test indices")
    if same:
        mu_e, sd_e = _used_stats(enroll, np.concatenate([e_idx, t_idx]), cohort, top_n, chunk)
        mu_t, sd_t = mu_e, sd_e
    else:
        mu_e, sd_e = _used_stats(enroll, e_idx, cohort, top_n, chunk)
        mu_t, sd_t = _used_stats(test, t_idx, cohort, top_n, chunk)
    raw = np.empty(len(e_idx))
    for a in range(0, len(raw), _TRIALS):  # chunks of trials: bounded gathered memory
        raw[a:a + _TRIALS] = dot_scores(enroll[e_idx[a:a + _TRIALS]], test[t_idx[a:a + _TRIALS]])
    normed = 0.5 * ((raw - mu_e[e_idx]) / sd_e[e_idx] + (raw - mu_t[t_idx]) / sd_t[t_idx])
    return raw, normed
