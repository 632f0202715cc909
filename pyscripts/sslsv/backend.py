"""Back end for utterance-level vectors (i-vectors or network embeddings), as Kaldi's
``egs/voxceleb/v1`` stages 5-6 (docs/ivector.md §7): global mean, LDA, length normalisation, the
two-covariance PLDA (EM training, smoothing, transform, log-likelihood-ratio scoring) and cosine
scoring.

Everything is float64 numpy, as Kaldi computes LDA and PLDA in double: the matrices are at most a few
hundred square (O(S³) once), and scoring is row-wise arithmetic on (trials × dim) index-gathered
arrays, processed in chunks of trials so memory does not grow with the trial list. No Python loop
runs per trial or per speaker in a hot path (the PLDA E-step loops over distinct speaker sizes,
as Kaldi does, and is vectorised over the speakers of each size).

Model files
-----------
``mean.vec``: Kaldi text vector ``[ v0 v1 ... ]`` (:func:`write_kaldi_vector`).

LDA (:class:`Lda`): ``.npz`` with key ``matrix`` (float64, ``d × (S+1)``): the affine transform
``[A | −Aμ]`` applied as ``y = A x − Aμ``; a ``d × S`` matrix is purely linear. Also read and
written as a Kaldi matrix (``transform.mat``, text ``[ ... ]``; a binary Kaldi matrix is read through
kaldiio), so Kaldi's ``ivector-compute-lda`` output can be used as is.

PLDA (:class:`Plda`): ``.npz`` with keys ``mean`` (float64, ``d``: m, the mean of the speaker means),
``transform`` (float64, ``d × d``: makes Φ_w = I and Φ_b = diag(ψ)), ``psi`` (float64, ``d``, ψ ≥ 0,
descending), ``offset`` (float64, ``d``, = −transform·mean). :meth:`Plda.write_kaldi_text` writes
Kaldi's text ``<Plda> [mean] [transform] [psi] </Plda>``, readable by ``ivector-plda-scoring``;
:meth:`Plda.load` reads either.
"""

from __future__ import annotations

import argparse
import io
import logging
import math
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .config import section
from .tables import DataError, atomic_path, c_sorted, read_map

# The supervised back end's options (the ``backend`` section of conf/ivector.yaml; these defaults apply
# to keys the file does not set, and the scoring script's command line overrides both).
BACKEND_DEFAULTS: dict[str, Any] = {"lda_dim": 64, "plda_iters": 10, "smoothing": 0.0}

log = logging.getLogger(__name__)


def backend_options(config: str | os.PathLike | None) -> dict[str, Any]:
    """The ``backend`` section of ``config`` over :data:`BACKEND_DEFAULTS` (unknown keys are errors)."""
    return section(config, "backend", BACKEND_DEFAULTS)

_CHUNK = 1 << 14  # trials per scoring chunk: 16384 x dim x 8 bytes per gathered side


# --------------------------------------------------------------------------- Kaldi text objects

def _fmt_row(v: np.ndarray) -> str:
    return " ".join(repr(float(x)) for x in v)


def write_kaldi_vector(path: str | os.PathLike, v: np.ndarray) -> None:
    """Write a Kaldi text vector ``[ v0 v1 ... ]`` atomically (full double precision)."""
    v = np.asarray(v, dtype=np.float64).ravel()
    with atomic_path(path) as tmp:
        Path(tmp).write_text(f" [ {_fmt_row(v)} ]\n")


def write_kaldi_matrix(path: str | os.PathLike, m: np.ndarray) -> None:
    """Write a Kaldi text matrix (``[`` then one row per line, ``]`` after the last) atomically."""
    m = np.atleast_2d(np.asarray(m, dtype=np.float64))
    rows = [f"  {_fmt_row(r)}" for r in m]
    rows[-1] += " ]"
    with atomic_path(path) as tmp:
        Path(tmp).write_text(" [\n" + "\n".join(rows) + "\n")


def _parse_bracketed(tokens: list[str], i: int, where: str) -> tuple[list[list[float]], int]:
    """Parse ``[ ... ]`` starting at tokens[i] == '['; rows split on newline markers ('\\n')."""
    if i >= len(tokens) or tokens[i] != "[":
        raise DataError(f"{where}: expected '[' (a Kaldi text vector or matrix)")
    rows: list[list[float]] = [[]]
    i += 1
    while i < len(tokens) and tokens[i] != "]":
        tok = tokens[i]
        if tok == "\n":
            if rows[-1]:
                rows.append([])
        else:
            try:
                rows[-1].append(float(tok))
            except ValueError:
                raise DataError(f"{where}: not a number: {tok!r}") from None
        i += 1
    if i >= len(tokens):
        raise DataError(f"{where}: missing ']'")
    rows = [r for r in rows if r]
    if len({len(r) for r in rows}) > 1:
        raise DataError(f"{where}: rows of different lengths")
    return rows, i + 1


def _tokens(text: str) -> list[str]:
    out: list[str] = []
    for line in text.splitlines():
        out.extend(line.replace("[", " [ ").replace("]", " ] ").split())
        out.append("\n")
    return out


def read_kaldi_vector(path: str | os.PathLike) -> np.ndarray:
    """Read a Kaldi vector file: text ``[ ... ]`` or binary (through kaldiio)."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: no such file")
    raw = path.read_bytes()
    if raw[:2] == b"\0B":
        import kaldiio
        return np.asarray(kaldiio.load_mat(str(path)), dtype=np.float64).ravel()
    rows, _ = _parse_bracketed(_tokens(raw.decode()), 0, str(path))
    return np.asarray([x for r in rows for x in r], dtype=np.float64)


def read_kaldi_matrix(path: str | os.PathLike) -> np.ndarray:
    """Read a Kaldi matrix file: text ``[ rows ]`` or binary (through kaldiio)."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: no such file")
    raw = path.read_bytes()
    if raw[:2] == b"\0B":
        import kaldiio
        return np.atleast_2d(np.asarray(kaldiio.load_mat(str(path)), dtype=np.float64))
    toks = _tokens(raw.decode())
    start = next((i for i, t in enumerate(toks) if t != "\n"), len(toks))
    rows, _ = _parse_bracketed(toks, start, str(path))
    if not rows:
        raise DataError(f"{path}: empty matrix")
    return np.asarray(rows, dtype=np.float64)


def _save_npz(path: str | os.PathLike, **arrays: np.ndarray) -> None:
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        np.savez(f, **arrays)


def _load_npz(path: str | os.PathLike, keys: Sequence[str]) -> dict[str, np.ndarray]:
    with np.load(path, allow_pickle=False) as z:
        missing = [k for k in keys if k not in z]
        if missing:
            raise DataError(f"{path}: not a model file of this kind (missing {', '.join(missing)})")
        return {k: np.asarray(z[k], dtype=np.float64) for k in keys}


def _is_npz(path: str | os.PathLike) -> bool:
    with open(path, "rb") as f:
        return f.read(2) == b"PK"


# --------------------------------------------------------------------------- helpers

def _speaker_index(spk: Sequence[str] | np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Integer speaker ids (0..K−1) and counts n_s for the labels of n rows."""
    spk = np.asarray(spk)
    if len(spk) != n:
        raise ValueError(f"{n} vectors but {len(spk)} speaker labels")
    _, idx, counts = np.unique(spk, return_inverse=True, return_counts=True)
    return idx.ravel(), counts


def _class_means(x: np.ndarray, idx: np.ndarray, counts: np.ndarray) -> np.ndarray:
    sums = np.zeros((len(counts), x.shape[1]))
    np.add.at(sums, idx, x)
    return sums / counts[:, None]


def _sym(a: np.ndarray) -> np.ndarray:
    return 0.5 * (a + a.T)


def global_mean(x: np.ndarray) -> np.ndarray:
    """``ivector-mean``: the mean of the (raw) vectors, float64."""
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 2 or len(x) == 0:
        raise ValueError("global_mean needs a non-empty (N, dim) array")
    return x.mean(axis=0)


def length_norm(x: np.ndarray, scaleup: bool = True) -> np.ndarray:
    """``ivector-normalize-length``: rows scaled to length sqrt(dim) (``scaleup``) or 1; zero rows
    are left unchanged (Kaldi warns)."""
    x = np.asarray(x, dtype=np.float64)
    norm = np.linalg.norm(x, axis=-1, keepdims=True)
    ratio = norm / math.sqrt(x.shape[-1]) if scaleup else norm
    return np.where(ratio == 0.0, x, x / np.where(ratio == 0.0, 1.0, ratio))


def speaker_ivectors(ivector_scp: str | os.PathLike, utt2spk: str | os.PathLike, ark: str | os.PathLike,
                     scp: str | os.PathLike, num_utts: str | os.PathLike) -> int:
    """Kaldi's ``ivector-normalize-length | ivector-mean spk2utt | ivector-normalize-length``: per speaker
    the mean of the length-normalised (‖·‖ = √S) utterance i-vectors, length-normalised again; and
    ``num_utts.ark`` (``<spk> <count>``). Speakers with no i-vector are left out (with a warning)."""
    import kaldiio
    vecs = {u: np.asarray(v, np.float64) for u, v in kaldiio.load_scp(str(ivector_scp)).items()}
    groups: dict[str, list[str]] = {}
    for u, s in read_map(utt2spk).items():
        groups.setdefault(s, []).append(u)
    counts = {}
    with atomic_path(scp) as tscp, atomic_path(ark) as tark:  # ark renamed first
        with kaldiio.WriteHelper(f"ark,scp:{tark},{tscp}") as w:
            for spk in c_sorted(groups):
                have = [vecs[u] for u in groups[spk] if u in vecs]
                if not have:
                    log.warning(f"speaker {spk}: no i-vectors")
                    continue
                w(spk, length_norm(length_norm(np.stack(have)).mean(axis=0)).astype(np.float32))
                counts[spk] = len(have)
        Path(tscp).write_text(Path(tscp).read_text().replace(str(tark), str(ark)))
    with atomic_path(num_utts) as t:
        Path(t).write_text("".join(f"{s} {c}\n" for s, c in counts.items()))
    return len(counts)


# --------------------------------------------------------------------------- LDA

class Lda:
    """``ivector-compute-lda`` (docs/ivector.md §7.2): ``matrix`` is the affine ``[A | −Aμ]``."""

    def __init__(self, matrix: np.ndarray | None = None) -> None:
        self.matrix = None if matrix is None else np.atleast_2d(np.asarray(matrix, dtype=np.float64))
        self.eigenvalues: np.ndarray | None = None  # between-class eigenvalues after whitening (all S)

    @property
    def dim(self) -> int:
        """Output dimension."""
        return self.matrix.shape[0]

    def fit(self, x: np.ndarray, spk: Sequence[str] | np.ndarray, dim: int,
            total_covariance_factor: float = 0.0, covariance_floor: float = 1e-6) -> Lda:
        """Estimate from vectors ``x`` (N × S) and their speaker labels.

        Subtract the input mean μ; Σ_tot = Σx xᵀ/N, Σ_w = (Σx xᵀ − Σ_s n_s x̄_s x̄_sᵀ)/N, Σ_b = Σ_tot − Σ_w;
        Z = f Σ_tot + (1 − f) Σ_w is whitened by its eigenvectors with eigenvalues floored at
        ``covariance_floor``·λ_max; the whitened Σ_b's top ``dim`` eigenvectors (descending by signed
        value) give A = E_dᵀ W_z.
        """
        x = np.asarray(x, dtype=np.float64)
        n, s = x.shape
        if not 0 < dim <= s:
            raise ValueError(f"LDA dimension {dim} must be in 1..{s}")
        idx, counts = _speaker_index(spk, n)
        k = len(counts)
        if n - k == 0:
            raise DataError(f"LDA: every speaker has one utterance ({n} utterances, {k} speakers); "
                            "no within-class statistics")
        if n < s:
            raise DataError(f"LDA: too little data for dimension {s}: {n} utterances")
        mu = x.mean(axis=0)
        xc = x - mu
        means = _class_means(xc, idx, counts)
        t_acc = xc.T @ xc
        b_acc = (means * counts[:, None]).T @ means
        tot = _sym(t_acc / n)
        within = _sym((t_acc - b_acc) / n)
        between = tot - within
        z = total_covariance_factor * tot + (1.0 - total_covariance_factor) * within
        lam, e = np.linalg.eigh(z)
        order = np.argsort(-np.abs(lam), kind="stable")
        lam, e = lam[order], e[:, order]
        lam = np.maximum(lam, covariance_floor * lam[0])
        wz = (e * lam ** -0.5).T  # diag(λ^{-1/2}) Eᵀ
        bproj = _sym(wz @ between @ wz.T)
        s_b, u = np.linalg.eigh(bproj)
        order = np.argsort(-s_b, kind="stable")
        self.eigenvalues = s_b[order]
        a = u[:, order[:dim]].T @ wz
        self.matrix = np.hstack([a, -(a @ mu)[:, None]])
        return self

    def transform(self, x: np.ndarray) -> np.ndarray:
        """``transform-vec``: ``A x + b`` for an affine matrix, ``A x`` for a linear one."""
        x = np.asarray(x, dtype=np.float64)
        m = self.matrix
        if m.shape[1] == x.shape[-1] + 1:
            return x @ m[:, :-1].T + m[:, -1]
        if m.shape[1] == x.shape[-1]:
            return x @ m.T
        raise ValueError(f"LDA matrix is {m.shape[0]}x{m.shape[1]} but vectors have dimension {x.shape[-1]}")

    def save(self, path: str | os.PathLike) -> None:
        """Write the ``.npz`` model (key ``matrix``) atomically."""
        _save_npz(path, matrix=self.matrix)

    def write_kaldi(self, path: str | os.PathLike) -> None:
        """Write the matrix as a Kaldi text matrix (``transform.mat``)."""
        write_kaldi_matrix(path, self.matrix)

    @classmethod
    def load(cls, path: str | os.PathLike) -> Lda:
        """Read an ``.npz`` model or a Kaldi matrix (text or binary)."""
        if not Path(path).is_file():
            raise DataError(f"{path}: no such file")
        if _is_npz(path):
            return cls(_load_npz(path, ["matrix"])["matrix"])
        return cls(read_kaldi_matrix(path))


# --------------------------------------------------------------------------- PLDA

class Plda:
    """Kaldi's two-covariance PLDA (``ivector-compute-plda``, docs/ivector.md §7.4-7.6).

    After :meth:`fit`, ``between``/``within`` hold Φ_b/Φ_w, ``objective`` the per-sample objective
    before each EM iteration and after the last; ``mean``, ``transform``, ``psi``, ``offset`` are the
    scoring model.
    """

    def __init__(self, mean: np.ndarray | None = None, transform: np.ndarray | None = None,
                 psi: np.ndarray | None = None) -> None:
        self.mean = None if mean is None else np.asarray(mean, dtype=np.float64)
        self.transform_ = None if transform is None else np.asarray(transform, dtype=np.float64)
        self.psi = None if psi is None else np.asarray(psi, dtype=np.float64)
        self.offset = None if mean is None else -(self.transform_ @ self.mean)
        self.between: np.ndarray | None = None
        self.within: np.ndarray | None = None
        self.objective: list[float] = []

    @property
    def dim(self) -> int:
        """Vector dimension."""
        return len(self.psi)

    # ---- training

    @staticmethod
    def _stats(x: np.ndarray, spk: Sequence[str] | np.ndarray) -> tuple:
        idx, counts = _speaker_index(spk, len(x))
        means = _class_means(x, idx, counts)
        m = means.mean(axis=0)  # mean of the speaker means [subtle]
        dev = x - means[idx]
        s_w = _sym(dev.T @ dev)
        return counts, means - m, m, s_w

    @staticmethod
    def objf(between: np.ndarray, within: np.ndarray, counts: np.ndarray, mtil: np.ndarray,
             s_w: np.ndarray) -> float:
        """Per-sample log-likelihood of the training data under (Φ_b, Φ_w) (docs/ivector.md §7.4)."""
        n, k = int(counts.sum()), len(counts)
        d = within.shape[0]
        l2pi = math.log(2 * math.pi)
        _, logdet_w = np.linalg.slogdet(within)
        part1 = -0.5 * ((n - k) * (logdet_w + d * l2pi) + np.trace(np.linalg.solve(within, s_w)))
        part2 = 0.0
        for c in np.unique(counts):
            sel = counts == c
            cov = between + within / c
            _, logdet = np.linalg.slogdet(cov)
            mt = mtil[sel]
            quad = np.einsum("ij,ij->i", mt, np.linalg.solve(cov, mt.T).T)
            part2 += float(np.sum(-0.5 * (logdet + d * l2pi + quad)))
        return float((part1 + part2) / n)

    def fit(self, x: np.ndarray, spk: Sequence[str] | np.ndarray, num_iters: int = 10) -> Plda:
        """EM for Φ_b, Φ_w from Φ_b = Φ_w = I (``PldaEstimator``), then the scoring model.

        Speakers with one utterance take part (between-class statistics only). Per iteration, for
        each speaker size n (vectorised over the speakers of that size): Ψ = (Φ_b⁻¹ + nΦ_w⁻¹)⁻¹,
        ŷ = Ψ nΦ_w⁻¹ m̃; Bstat += Ψ + ŷŷᵀ, Wstat += n(Ψ + (m̃ − ŷ)(m̃ − ŷ)ᵀ); Φ_w = (S_w + Wstat)/N,
        Φ_b = Bstat/K.
        """
        x = np.asarray(x, dtype=np.float64)
        n, d = x.shape
        counts, mtil, m, s_w = self._stats(x, spk)
        k = len(counts)
        if n <= d:
            raise DataError(f"PLDA: too little data: {n} vectors of dimension {d} (need more than {d})")
        if np.all(counts == 1):
            raise DataError(f"PLDA: every speaker has one utterance ({k} speakers); "
                            "no within-class statistics")
        between, within = np.eye(d), np.eye(d)
        sizes = np.unique(counts)
        self.objective = []
        for it in range(num_iters):
            self.objective.append(self.objf(between, within, counts, mtil, s_w))
            log.info(f"PLDA EM iteration {it + 1}/{num_iters}: objective per sample "
                     f"{self.objective[-1]:.6f}")
            b_inv = np.linalg.inv(between)
            w_inv = np.linalg.inv(within)
            bstat = np.zeros((d, d))
            wstat = s_w.copy()
            for c in sizes:
                sel = counts == c
                mt = mtil[sel]  # (K_c, d)
                psi = _sym(np.linalg.inv(b_inv + c * w_inv))
                yhat = mt @ (c * w_inv) @ psi  # rows: (Ψ nΦ_w⁻¹ m̃)ᵀ, Ψ and Φ_w⁻¹ symmetric
                r = mt - yhat
                kc = len(mt)
                bstat += kc * psi + yhat.T @ yhat
                wstat += c * (kc * psi + r.T @ r)
            within = _sym(wstat / n)
            between = _sym(bstat / k)
        self.objective.append(self.objf(between, within, counts, mtil, s_w))
        log.info(f"PLDA after {num_iters} iterations: objective per sample {self.objective[-1]:.6f}")
        self.between, self.within = between, within
        self._set_output(m, between, within)
        return self

    def _set_output(self, m: np.ndarray, between: np.ndarray, within: np.ndarray) -> None:
        """Φ_w = C Cᵀ, T1 = C⁻¹; T1 Φ_b T1ᵀ = U diag(s) Uᵀ (s floored at 0, descending);
        transform = Uᵀ T1, ψ = s, offset = −transform·m."""
        c = np.linalg.cholesky(within)
        t1 = np.linalg.inv(c)
        s, u = np.linalg.eigh(_sym(t1 @ between @ t1.T))
        s = np.maximum(s, 0.0)
        order = np.argsort(-s, kind="stable")
        self.mean = m
        self.psi = s[order]
        self.transform_ = u[:, order].T @ t1
        self.offset = -(self.transform_ @ m)

    def smooth(self, beta: float) -> Plda:
        """``ivector-copy-plda --smoothing=β``: within-class covariance I + β diag(ψ) in the
        transformed space, renormalised to I: ψ ← ψ/(1 + βψ), rows of transform scaled by
        (1 + βψ)^{-1/2}. β = 0 changes nothing."""
        if not 0.0 <= beta <= 1.0:
            raise ValueError(f"PLDA smoothing must be in [0, 1], got {beta}")
        if beta == 0.0:
            return self
        w = 1.0 + beta * self.psi
        self.psi = self.psi / w
        self.transform_ = self.transform_ * (w ** -0.5)[:, None]
        self.offset = -(self.transform_ @ self.mean)
        return self

    # ---- scoring

    def transform(self, x: np.ndarray, num_utts: int | np.ndarray = 1, normalize_length: bool = True,
                  simple_length_norm: bool = False) -> np.ndarray:
        """``Plda::TransformIvector`` for rows of ``x``: y = transform·x + offset, then (by default)
        y ← y·sqrt(d / Σ_k y_k²/(ψ_k + 1/n)) with n = ``num_utts`` (scalar or per row); with
        ``simple_length_norm`` the factor is sqrt(d)/‖y‖. Returned rounded to float32 and back, as
        ``ivector-plda-scoring`` stores the transformed vectors."""
        x = np.asarray(x, dtype=np.float64)
        y = x @ self.transform_.T + self.offset
        if normalize_length:
            d = y.shape[-1]
            if simple_length_norm:
                f = math.sqrt(d) / np.linalg.norm(y, axis=-1, keepdims=True)
            else:
                nu = np.asarray(num_utts, dtype=np.float64)
                if np.any(nu <= 0):
                    raise ValueError("num_utts must be positive")
                nu = nu[..., None] if nu.ndim else nu
                dot = np.sum(y * y / (self.psi + 1.0 / nu), axis=-1, keepdims=True)
                f = np.sqrt(d / dot)
            y = y * f
        return y.astype(np.float32).astype(np.float64)

    def llr(self, enroll: np.ndarray, test: np.ndarray, num_utts: int | np.ndarray = 1) -> np.ndarray:
        """``Plda::LogLikelihoodRatio`` row by row (vectorised) for transformed enrollment vectors
        (means of ``num_utts`` utterances) and transformed test vectors:
        μ = nψ/(nψ + 1)·ȳ, v = 1 + ψ/(nψ + 1);
        LLR = −½Σ[ln v + (y_t − μ)²/v] + ½Σ[ln(1 + ψ) + y_t²/(1 + ψ)]."""
        e = np.atleast_2d(np.asarray(enroll, dtype=np.float64))
        t = np.atleast_2d(np.asarray(test, dtype=np.float64))
        nu = np.asarray(num_utts, dtype=np.float64)
        nu = nu[:, None] if nu.ndim else nu
        psi = self.psi
        npsi = nu * psi
        mu = npsi / (npsi + 1.0) * e
        v = 1.0 + psi / (npsi + 1.0)
        given = -0.5 * np.sum(np.log(v) + (t - mu) ** 2 / v, axis=-1)
        v0 = 1.0 + psi
        without = -0.5 * np.sum(np.log(v0) + t * t / v0, axis=-1)
        return given - without

    # ---- files

    def save(self, path: str | os.PathLike) -> None:
        """Write the ``.npz`` model (keys mean, transform, psi, offset) atomically, whatever the name."""
        _save_npz(path, mean=self.mean, transform=self.transform_, psi=self.psi, offset=self.offset)

    def write_kaldi_text(self, path: str | os.PathLike) -> None:
        """Write Kaldi's text PLDA object ``<Plda> [mean] [transform] [psi] </Plda>`` atomically."""
        buf = io.StringIO()
        buf.write(f"<Plda>  [ {_fmt_row(self.mean)} ]\n [\n")
        rows = [f"  {_fmt_row(r)}" for r in self.transform_]
        buf.write("\n".join(rows) + " ]\n")
        buf.write(f" [ {_fmt_row(self.psi)} ]\n</Plda> \n")
        with atomic_path(path) as tmp:
            Path(tmp).write_text(buf.getvalue())

    @classmethod
    def load(cls, path: str | os.PathLike) -> Plda:
        """Read an ``.npz`` model or Kaldi's text PLDA object."""
        path = Path(path)
        if not path.is_file():
            raise DataError(f"{path}: no such file")
        if _is_npz(path):
            z = _load_npz(path, ["mean", "transform", "psi"])
            return cls(z["mean"], z["transform"], z["psi"])
        toks = _tokens(path.read_text())

        def skip(i: int) -> int:
            while i < len(toks) and toks[i] == "\n":
                i += 1
            return i

        i = skip(0)
        if i >= len(toks) or toks[i] != "<Plda>":
            raise DataError(f"{path}: neither an .npz PLDA model nor a Kaldi text <Plda> object")
        parts = []
        i += 1
        for _ in range(3):  # mean, transform, psi
            rows, i = _parse_bracketed(toks, skip(i), str(path))
            parts.append(np.asarray(rows, dtype=np.float64))
        mean, tr, psi = parts
        return cls(mean.ravel(), tr, psi.ravel())


# --------------------------------------------------------------------------- trial scoring

def cosine_scores(enroll: np.ndarray, test: np.ndarray, mean: np.ndarray | None = None) -> np.ndarray:
    """Cosine similarity of row-aligned enrollment and test vectors after subtracting ``mean``
    (a zero vector scores 0)."""
    e = np.asarray(enroll, dtype=np.float64)
    t = np.asarray(test, dtype=np.float64)
    if mean is not None:
        e = e - mean
        t = t - mean
    num = np.einsum("ij,ij->i", e, t)
    den = np.sqrt(np.einsum("ij,ij->i", e, e) * np.einsum("ij,ij->i", t, t))
    return np.divide(num, den, out=np.zeros_like(num), where=den > 0)


def dot_scores(enroll: np.ndarray, test: np.ndarray) -> np.ndarray:
    """Row-wise dot products (cosine scores of vectors already length-normalised to 1)."""
    return np.einsum("ij,ij->i", enroll, test)


def score_pairs(vectors: np.ndarray, enroll_idx: np.ndarray, test_idx: np.ndarray,
                fn: Callable[[np.ndarray, np.ndarray], np.ndarray], chunk: int = _CHUNK) -> np.ndarray:
    """``fn(vectors[enroll_idx], vectors[test_idx])`` in chunks of trials (bounded memory)."""
    enroll_idx = np.asarray(enroll_idx)
    test_idx = np.asarray(test_idx)
    out = np.empty(len(enroll_idx), dtype=np.float64)
    for a in range(0, len(out), chunk):
        b = min(a + chunk, len(out))
        out[a:b] = fn(vectors[enroll_idx[a:b]], vectors[test_idx[a:b]])
    return out


def main(argv: list[str] | None = None) -> int:
    """``python3 -m sslsv.backend options CONFIG``: print ``lda_dim plda_iters smoothing`` of the
    config's ``backend`` section (the defaults of steps/score_plda.sh)."""
    ap = argparse.ArgumentParser(prog="python3 -m sslsv.backend")
    sub = ap.add_subparsers(dest="cmd", required=True)
    sub.add_parser("options", help="print lda_dim plda_iters smoothing").add_argument("config")
    a = ap.parse_args(argv)
    try:
        o = backend_options(a.config)
    except DataError as e:
        print(f"ERROR: {e}", file=sys.stderr)
        return 1
    print(*(o[k] for k in BACKEND_DEFAULTS))
    return 0


if __name__ == "__main__":
    sys.exit(main())
