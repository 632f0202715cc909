"""Diagonal and full-covariance GMMs (UBMs) as Kaldi trains them (docs/ivector.md §4, §5): models, torch
log-likelihood evaluators, Gaussian selection, EM statistics, Kaldi's M-steps, splitting and the
in-memory initialisation of ``gmm-global-init-from-feats``.

Model files (``.dubm`` diagonal, ``.ubm`` full) are numpy ``.npz`` archives, written atomically:

=========  ==============  =======  ============================================================
key        shape           dtype    meaning
=========  ==============  =======  ============================================================
kind       ()              str      ``"diag"`` or ``"full"``
weights    (C,)            float64  mixture weights (sum 1, up to Kaldi's un-renormalised floors)
means      (C, D)          float64  component means
vars       (C, D)          float64  diagonal model only: variances
covars     (C, D, D)       float64  full model only: covariance matrices (symmetric)
=========  ==============  =======  ============================================================

Kaldi stores the same models as float32 natural parameters (``<GCONSTS>``, ``<WEIGHTS>``,
``<MEANS_INVVARS>``/``<INV_VARS>`` or ``<MEANS_INVCOVARS>``/``<INV_COVARS>``); ours keep float64 and
derive the precision-form constants in the evaluators (:class:`DiagLoglik`, :class:`FullLoglik`).
``pyscripts/convert_kaldi_gmm.py`` converts Kaldi text dumps.

Precision: evaluators run in the dtype asked for (float32 on the fast path, float64 for parity/tests);
posteriors are turned into float64 before accumulation, and every statistic (``n``, ``m1``, ``m2``,
``M2``), M-step and split is float64 (Kaldi accumulates and updates in double).

Statistics files (``.acc``: the E-step of one data split) are ``.npz`` with ``kind`` (``"diag"`` /
``"full"``), ``n`` (C,), ``m1`` (C, D), ``m2`` (C, D) or (C, D, D), ``tot_loglik`` () and
``num_frames`` (), all float64 (the frame count too): :class:`GmmStats`.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar, Self

import numpy as np
import torch

from ..tables import DataError, atomic_path

LOG_2PI = math.log(2.0 * math.pi)

log = logging.getLogger(__name__)


# --------------------------------------------------------------------------------------------------
# models

def _save_npz(path: str | os.PathLike, **arrays) -> None:
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        np.savez(f, **arrays)


def _load_npz(path: str | os.PathLike, kind: str) -> dict[str, np.ndarray]:
    p = Path(path)
    if not p.is_file():
        raise DataError(f"{p}: no such model file")
    try:
        with np.load(p, allow_pickle=False) as z:
            data = {k: z[k] for k in z.files}
    except Exception as e:  # noqa: BLE001
        raise DataError(f"{p}: not a model file (.npz): {e}") from e
    got = str(data.get("kind", ""))
    if got != kind:
        raise DataError(f"{p}: expected a {kind} GMM, found kind {got!r}")
    return data


class _Gmm:
    """What the diagonal and full models share: sizes, the ``.npz`` file and copies. A subclass names
    its ``kind`` and the field holding its covariances (``vars`` or ``covars``)."""

    kind: ClassVar[str]
    cov_field: ClassVar[str]
    cov_ndim: ClassVar[int]
    weights: np.ndarray
    means: np.ndarray

    def __post_init__(self) -> None:
        """float64 arrays with consistent shapes: weights (C,), means (C, D), covariances (C, D) for a
        diagonal model or (C, D, D) for a full one (``cov_ndim``)."""
        self.weights = np.asarray(self.weights, dtype=np.float64).reshape(-1)
        self.means = np.asarray(self.means, dtype=np.float64)
        setattr(self, self.cov_field, np.asarray(self._cov(), dtype=np.float64))
        c = self.weights.shape[0]
        ok = self.means.ndim == 2 and self.means.shape[0] == c
        if not ok or self._cov().shape != (c,) + (self.means.shape[1],) * (self.cov_ndim - 1):
            raise ValueError(f"{type(self).__name__}: inconsistent shapes weights {self.weights.shape}, "
                             f"means {self.means.shape}, {self.cov_field} {self._cov().shape}")

    @property
    def num_gauss(self) -> int:
        return self.weights.shape[0]

    @property
    def dim(self) -> int:
        return self.means.shape[1]

    def _cov(self) -> np.ndarray:
        return getattr(self, self.cov_field)

    def save(self, path: str | os.PathLike) -> None:
        """Write the ``.npz`` model (format in the module docstring), atomically."""
        _save_npz(path, kind=np.array(self.kind), weights=self.weights, means=self.means,
                  **{self.cov_field: self._cov()})

    @classmethod
    def load(cls, path: str | os.PathLike) -> Self:
        d = _load_npz(path, cls.kind)
        return cls(d["weights"], d["means"], d[cls.cov_field])

    def copy(self) -> Self:
        return type(self)(self.weights.copy(), self.means.copy(), self._cov().copy())


@dataclass
class DiagGmm(_Gmm):
    """Diagonal-covariance GMM: ``weights`` (C,), ``means`` (C, D), ``vars`` (C, D), float64."""

    kind: ClassVar[str] = "diag"
    cov_field: ClassVar[str] = "vars"
    cov_ndim: ClassVar[int] = 2
    weights: np.ndarray
    means: np.ndarray
    vars: np.ndarray

    def to_full(self) -> FullGmm:
        """``gmm-global-to-fgmm``: covariances ``diag(vars)``, same weights and means."""
        covars = np.zeros((self.num_gauss, self.dim, self.dim))
        ii = np.arange(self.dim)
        covars[:, ii, ii] = self.vars
        return FullGmm(self.weights.copy(), self.means.copy(), covars)


@dataclass
class FullGmm(_Gmm):
    """Full-covariance GMM: ``weights`` (C,), ``means`` (C, D), ``covars`` (C, D, D), float64."""

    kind: ClassVar[str] = "full"
    cov_field: ClassVar[str] = "covars"
    cov_ndim: ClassVar[int] = 3
    weights: np.ndarray
    means: np.ndarray
    covars: np.ndarray

    def to_diag(self) -> DiagGmm:
        """``fgmm-global-to-gmm``: the diagonal of each covariance (not of the precision), same weights
        and means. This is the model Kaldi uses for Gaussian selection with a full UBM."""
        return DiagGmm(self.weights.copy(), self.means.copy(),
                       np.diagonal(self.covars, axis1=1, axis2=2).copy())


def load_gmm(path: str | os.PathLike) -> DiagGmm | FullGmm:
    """Load a diagonal or full model, whichever the file holds."""
    p = Path(path)
    try:
        with np.load(p, allow_pickle=False) as z:
            kind = str(z["kind"])
    except Exception as e:  # noqa: BLE001
        raise DataError(f"{p}: not a GMM model file: {e}") from e
    return DiagGmm.load(p) if kind == "diag" else FullGmm.load(p)


# --------------------------------------------------------------------------------------------------
# evaluators

def _log(x: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore"):
        return np.log(x)


class DiagLoglik:
    """Per-component log-likelihoods ``ℓ_c(x)`` (weights included) of a diagonal GMM, as one GEMM:
    ``[x, x²] @ [μ/σ², −½/σ²]ᵀ + g`` with ``g_c = ln w_c − ½(D ln2π + Σ ln σ² + Σ μ²/σ²)``.
    Constants are computed once in float64, then cast to ``dtype`` on ``device``."""

    def __init__(self, gmm: DiagGmm, device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32):
        self.device, self.dtype = torch.device(device), dtype
        inv = 1.0 / gmm.vars
        g = _log(gmm.weights) - 0.5 * (gmm.dim * LOG_2PI + np.log(gmm.vars).sum(1)
                                       + (gmm.means ** 2 * inv).sum(1))
        w = np.concatenate([gmm.means * inv, -0.5 * inv], axis=1)       # (C, 2D)
        self.weight = torch.as_tensor(w.T.copy(), dtype=dtype, device=self.device)   # (2D, C)
        d = gmm.dim
        self.w_lin, self.w_sq = self.weight[:d].contiguous(), self.weight[d:].contiguous()
        self.gconst = torch.as_tensor(g, dtype=dtype, device=self.device)
        self.num_gauss, self.dim = gmm.num_gauss, gmm.dim

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        """``x`` (T, D) → (T, C): two GEMMs, ``x`` and ``x²`` (no concatenated copy)."""
        x = torch.as_tensor(x, device=self.device).to(self.dtype)
        return torch.addmm(self.gconst, x, self.w_lin).addmm_(x * x, self.w_sq)


def tril_indices(dim: int) -> tuple[np.ndarray, np.ndarray]:
    """Row-major lower triangle (i ≥ j) indices: Kaldi's packed ``SpMatrix`` order."""
    return np.tril_indices(dim)


def vech_outer_t(x: torch.Tensor, flat: torch.Tensor) -> torch.Tensor:
    """``vech(x xᵀ)`` of every row of ``x`` (lower triangle, row-major; ``flat = i*D + j`` for i ≥ j) as
    the columns of a ``(D(D+1)/2, T)`` matrix. On the CPU row ``i`` of the triangle is one product
    ``x[:, :i+1]·x[:, i]`` over all frames (a loop over the D rows, each a contiguous block: 2-3x faster
    than forming the T×D×D outer products); on a GPU the outer products and one ``index_select``."""
    t, d = x.shape
    if x.device.type != "cpu":
        return torch.index_select((x[:, :, None] * x[:, None, :]).reshape(t, d * d), 1, flat).T
    xt = x.T.contiguous()
    out = torch.empty((d * (d + 1) // 2, t), dtype=x.dtype)
    o = 0
    for i in range(d):
        torch.mul(xt[:i + 1], xt[i], out=out[o:o + i + 1])
        o += i + 1
    return out


@dataclass
class GaussianBlocks:
    """Entries (e.g. the (frame, Gaussian) pairs of a gselect) sorted by Gaussian and cut into blocks of
    ``block`` rows, so that work per Gaussian becomes one batched GEMM over the blocks; padding is at
    most ``C·block`` rows however unbalanced the Gaussians are. ``slot[e]`` is the row of entry ``e`` in
    the flattened (blocks·block) layout, ``source[r]`` the entry in row ``r`` (N for a padding row);
    block ``b`` belongs to Gaussian ``gauss[b]``."""

    slot: torch.Tensor
    source: torch.Tensor
    gauss: torch.Tensor
    block: int

    @staticmethod
    def rows_for(num_entries: int, num_gauss: int) -> int:
        """A block length about a component's share of the entries, 16..128 rows (shorter blocks copy
        per-component matrices more often, longer ones pad more)."""
        return 1 << min(7, max(4, (num_entries // num_gauss).bit_length() - 1))

    @classmethod
    def of(cls, g: torch.Tensor, num_gauss: int, block: int = 64) -> GaussianBlocks:
        """Blocks of the Gaussian indices ``g`` (N,)."""
        n = len(g)
        order = torch.argsort(g.to(torch.int32), stable=True)     # int32 sorts about twice as fast
        gs = g[order]
        cnt = torch.bincount(gs, minlength=num_gauss)
        start = torch.cumsum(cnt, 0) - cnt
        nblk = (cnt + block - 1) // block
        bstart = torch.cumsum(nblk, 0) - nblk
        # row of the j-th sorted entry: its Gaussian's first row + its rank within the Gaussian
        rows = bstart[gs] * block + torch.arange(n, device=g.device) - start[gs]
        slot = torch.empty_like(rows)
        slot[order] = rows
        source = torch.full((int(nblk.sum()) * block,), n, dtype=torch.long, device=g.device)
        source[rows] = order
        gauss = torch.repeat_interleave(torch.arange(num_gauss, device=g.device), nblk)
        return cls(slot, source, gauss, block)

    def pack(self, rows: torch.Tensor, per_row: int = 1) -> torch.Tensor:
        """(blocks, block, ...) of ``rows[e // per_row]`` per entry ``e`` (``per_row = K``: the frame of
        an entry of a flattened (T, K) selection), padding rows zero (their source N = T·K maps to the
        appended zero row T)."""
        ext = torch.cat([rows, rows.new_zeros((1,) + rows.shape[1:])])
        src = self.source if per_row == 1 else self.source // per_row
        return ext.index_select(0, src).reshape((len(self.gauss), self.block) + rows.shape[1:])

    def weighted_outer(self, xp: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        """``Σ_rows w x xᵀ`` of each block (blocks, D, D) of the packed rows ``xp`` with per-entry
        weights ``w`` (N,); summing them per ``gauss`` gives each Gaussian's second-order statistics."""
        return torch.bmm((xp * self.pack(w)[..., None]).transpose(1, 2), xp)

    def unpack(self, packed: torch.Tensor) -> torch.Tensor:
        """The entries' rows of ``packed`` (blocks, block, ...) → (N, ...) in entry order."""
        return packed.reshape((-1,) + packed.shape[2:]).index_select(0, self.slot)


class FullLoglik:
    """Per-component log-likelihoods of a full-covariance GMM (weights included) with the quadratic-feature
    trick of docs/ivector.md §10.3: ``ℓ = g + φ(x) @ Wᵀ`` where ``φ(x) = [x, vech(xxᵀ)]`` and
    ``W_c = [P_c μ_c, −½ vech'(P_c)]`` (off-diagonal entries doubled). Precisions, log-determinants and
    ``g_c = ln w_c − ½(D ln2π + ln|Σ_c| + μ_cᵀP_cμ_c)`` are computed once in float64 (Cholesky).

    Called with ``idx`` (T, K) it returns the selected components only. ``restricted="dense"`` does the
    one GEMM for all C and picks the K columns (C·F multiply-adds per frame), ``"grouped"`` sorts the T·K
    (frame, component) pairs by component and whitens each block of pairs with its component's
    ``A_c = L_c⁻ᵀ`` (``Σ_c = L_c L_cᵀ``): ``ℓ = g'_c − ½‖x A_c − μ_c A_c‖²``, one batched GEMM of
    K·D² multiply-adds per frame (:class:`GaussianBlocks`); it also avoids the cancellation of the
    quadratic-feature form in float32. ``"auto"`` takes grouped for C > K and dense otherwise.
    Frames are processed in chunks of ``chunk_bytes`` so memory stays bounded."""

    def __init__(self, gmm: FullGmm, device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32,
                 chunk_bytes: int = 64 << 20, restricted: str = "auto", block: int | None = None):
        if restricted not in ("auto", "dense", "grouped"):
            raise ValueError(f"restricted must be auto, dense or grouped, got {restricted!r}")
        self.device, self.dtype, self.chunk_bytes = torch.device(device), dtype, chunk_bytes
        self.restricted, self.block = restricted, block
        d = gmm.dim
        try:
            chol = np.linalg.cholesky(gmm.covars)          # numpy: torch's batched CPU inverse is slow
        except np.linalg.LinAlgError:
            bad = int(np.argmin(np.linalg.eigvalsh(gmm.covars).min(1)))
            raise ValueError(f"FullLoglik: covariance of component {bad} is not positive definite") from None
        prec = np.linalg.inv(gmm.covars)
        prec = 0.5 * (prec + prec.transpose(0, 2, 1))
        logdet = 2.0 * np.log(np.diagonal(chol, axis1=1, axis2=2)).sum(1)
        pmu = np.einsum("cij,cj->ci", prec, gmm.means)
        g = _log(gmm.weights) - 0.5 * (d * LOG_2PI + logdet + (pmu * gmm.means).sum(1))
        r, c = tril_indices(d)
        quad = -prec[:, r, c] * np.where(r == c, 0.5, 1.0)
        w = np.concatenate([pmu, quad], axis=1)                            # (C, F)
        self.flat = torch.as_tensor(r * d + c, device=self.device)
        self.weight = torch.as_tensor(w, dtype=dtype, device=self.device)  # (C, F)
        self.w_lin, self.w_quad = self.weight[:, :d].contiguous(), self.weight[:, d:].contiguous()
        self.gconst = torch.as_tensor(g, dtype=dtype, device=self.device)
        self.num_gauss, self.dim, self.num_feats = gmm.num_gauss, d, w.shape[1]
        # the whitened form of the grouped path: A_c = L_c^-T, b_c = μ_c A_c, g'_c without μ_c P_c μ_c
        a = np.linalg.inv(chol).transpose(0, 2, 1)
        self.whiten = torch.as_tensor(a, dtype=dtype, device=self.device)              # (C, D, D)
        self.whiten_mean = torch.as_tensor(np.einsum("cj,cjk->ck", gmm.means, a), dtype=dtype,
                                           device=self.device)                       # (C, D)
        self.gconst_norm = torch.as_tensor(_log(gmm.weights) - 0.5 * (d * LOG_2PI + logdet), dtype=dtype,
                                           device=self.device)

    def __call__(self, x: torch.Tensor, idx: torch.Tensor | None = None) -> torch.Tensor:
        """``x`` (T, D) → (T, C), or with ``idx`` (T, K) → (T, K) for the selected components."""
        x = torch.as_tensor(x, device=self.device).to(self.dtype)
        t = x.shape[0]
        item = self.weight.element_size()
        mode = "dense"
        if idx is not None:
            idx = torch.as_tensor(idx, device=self.device)
            k = idx.shape[1]
            mode = self.restricted
            if mode == "auto":
                mode = "grouped" if self.num_gauss > k else "dense"
        if mode == "grouped":
            d, block = self.dim, self.block or GaussianBlocks.rows_for(t * k, self.num_gauss)
            step = max(1, self.chunk_bytes // (k * (2 * d + d * d // block + 8) * item))
            if step < t:
                block = self.block or GaussianBlocks.rows_for(step * k, self.num_gauss)
            out = torch.empty((t, k), dtype=self.dtype, device=self.device)
            for a in range(0, t, step):
                out[a:a + step] = self.grouped(x[a:a + step], idx[a:a + step], block)
            return out
        step = max(1, self.chunk_bytes // ((self.num_feats + self.num_gauss) * item))
        out = torch.empty((t, self.num_gauss if idx is None else k), dtype=self.dtype, device=self.device)
        for a in range(0, t, step):
            ll = self.dense(x[a:a + step], vech_outer_t(x[a:a + step], self.flat))
            out[a:a + step] = ll if idx is None else ll.gather(1, idx[a:a + step])
        return out

    def grouped(self, x: torch.Tensor, idx: torch.Tensor, block: int = 64) -> torch.Tensor:
        """(T, K) log-likelihoods of frames ``x`` (T, D) under their components ``idx`` (T, K), the
        pairs grouped by component in blocks of ``block`` rows (see the class docstring)."""
        blk = GaussianBlocks.of(idx.reshape(-1), self.num_gauss, block)
        return self.packed(blk, blk.pack(x, idx.shape[1]), idx)

    def packed(self, blk: GaussianBlocks, xp: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
        """:meth:`grouped` on frames already packed into ``blk``'s blocks (``xp``, in the model's dtype)."""
        y = torch.bmm(xp, self.whiten[blk.gauss]).sub_(self.whiten_mean[blk.gauss][:, None])
        q = blk.unpack(y.square_().sum(2))                                 # (T·K,)
        return (self.gconst_norm[idx.reshape(-1)] - 0.5 * q).reshape(idx.shape)

    def dense(self, x: torch.Tensor, vt: torch.Tensor) -> torch.Tensor:
        """(T, C) log-likelihoods of frames ``x`` (T, D) given their :func:`vech_outer_t` ``vt`` (in the
        model's dtype): ``g + x W_linᵀ + vtᵀ W_quadᵀ``, two GEMMs and no concatenated φ(x)."""
        return torch.addmm(self.gconst, x, self.w_lin.T).addmm_(vt.T, self.w_quad.T)


def gselect(loglik: torch.Tensor, k: int) -> torch.Tensor:
    """Indices of the ``k`` largest log-likelihoods per row, descending; exact ties → larger index first
    (Kaldi sorts (loglik, index) pairs descending). ``k ≥ C`` keeps all C. Returns int64 (T, min(k, C)).

    Uses ``topk(k+1)`` and re-sorts the selection; rows where the k-th and (k+1)-th values tie (so the
    boundary choice matters) fall back to a full stable sort."""
    t, c = loglik.shape
    k = min(k, c)
    rev = torch.flip(loglik, dims=[1])                  # column j holds index c-1-j: ties → smaller j first

    def ordered(vals: torch.Tensor, cols: torch.Tensor) -> torch.Tensor:
        # sort the selected by (value desc, original index desc) = (value desc, reversed column asc)
        o1 = torch.argsort(cols, dim=1, stable=True)
        vals, cols = vals.gather(1, o1), cols.gather(1, o1)
        o2 = torch.argsort(vals, dim=1, descending=True, stable=True)
        return cols.gather(1, o2)

    if t == 0:
        return torch.empty((0, k), dtype=torch.long, device=loglik.device)
    if k == c:
        cols = torch.argsort(rev, dim=1, descending=True, stable=True)
        return (c - 1) - cols
    vals, cols = torch.topk(rev, k + 1, dim=1, sorted=True)
    # topk's values are sorted; only a row with equal values among its first k needs the tie order
    out = cols[:, :k].clone()
    eq = torch.nonzero((vals[:, 1:k] == vals[:, :k - 1]).any(1)).squeeze(1)
    if eq.numel():
        out[eq] = ordered(vals[eq, :k], cols[eq, :k])
    tie = vals[:, k - 1] == vals[:, k]
    if bool(tie.any()):
        rows = torch.nonzero(tie).squeeze(1)
        full = torch.argsort(rev[rows], dim=1, descending=True, stable=True)[:, :k]
        out[rows] = full
    return (c - 1) - out


# --------------------------------------------------------------------------------------------------
# statistics

@dataclass
class GmmStats:
    """EM statistics (float64): ``n`` (C,), ``m1`` (C, D), ``m2`` (C, D) for a diagonal model or
    (C, D, D) uncentred scatter for a full one; ``tot_loglik`` is the summed frame log-likelihood
    (logsumexp over the evaluated components) and ``num_frames`` the frame count."""

    kind: str
    n: np.ndarray
    m1: np.ndarray
    m2: np.ndarray
    tot_loglik: float = 0.0
    num_frames: float = 0.0

    @classmethod
    def zeros(cls, kind: str, num_gauss: int, dim: int) -> GmmStats:
        m2 = np.zeros((num_gauss, dim) if kind == "diag" else (num_gauss, dim, dim))
        return cls(kind, np.zeros(num_gauss), np.zeros((num_gauss, dim)), m2)

    def add(self, other: GmmStats) -> None:
        if other.kind != self.kind or other.m2.shape != self.m2.shape:
            raise ValueError(f"cannot add {other.kind} stats {other.m2.shape} to {self.kind} {self.m2.shape}")
        self.n += other.n
        self.m1 += other.m1
        self.m2 += other.m2
        self.tot_loglik += other.tot_loglik
        self.num_frames += other.num_frames

    @property
    def avg_loglik(self) -> float:
        return self.tot_loglik / self.num_frames if self.num_frames > 0 else float("nan")

    def save(self, path: str | os.PathLike) -> None:
        _save_npz(path, kind=np.array(self.kind), n=self.n, m1=self.m1, m2=self.m2,
                  tot_loglik=np.float64(self.tot_loglik), num_frames=np.float64(self.num_frames))

    @classmethod
    def load(cls, path: str | os.PathLike) -> GmmStats:
        p = Path(path)
        if not p.is_file():
            raise DataError(f"{p}: no such statistics file")
        with np.load(p, allow_pickle=False) as z:
            return cls(str(z["kind"]), z["n"], z["m1"], z["m2"], float(z["tot_loglik"]),
                       float(z["num_frames"]))


def chunked(frames: Iterable[np.ndarray], chunk: int) -> Iterator[np.ndarray]:
    """Regroup per-utterance frame matrices into blocks of about ``chunk`` rows (utterance order kept)."""
    buf: list[np.ndarray] = []
    size = 0
    for x in frames:
        if x.shape[0] == 0:
            continue
        buf.append(x)
        size += x.shape[0]
        while size >= chunk:
            cat = np.concatenate(buf) if len(buf) > 1 else buf[0]
            yield cat[:chunk]
            rest = cat[chunk:]
            buf, size = ([rest], rest.shape[0]) if rest.shape[0] else ([], 0)
    if size:
        yield np.concatenate(buf) if len(buf) > 1 else buf[0]


def softmax_lse(ll: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Row softmax and log-sum-exp of ``ll`` (T, K) in one pass (the shifted exponentials serve both),
    returned in float64: ``(posteriors (T, K), log-likelihoods (T,))``."""
    m = ll.max(dim=1, keepdim=True).values
    e = torch.exp(ll - m)
    s = e.sum(dim=1, keepdim=True)
    return (e / s).to(torch.float64), (m + torch.log(s)).squeeze(1).to(torch.float64)


class DiagAccumulator:
    """E-step of a diagonal GMM (``gmm-global-acc-stats``): posteriors are the softmax over all
    components, or, with ``gselect_model`` and ``num_gselect``, over the top-K components of that model
    (Kaldi's stored gselect; recomputed here from the same fixed model, which gives the same indices)."""

    def __init__(self, gmm: DiagGmm, gselect_model: DiagGmm | None = None, num_gselect: int = 0,
                 device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32):
        self.gmm = gmm
        self.dev = torch.device(device)
        self.ll = DiagLoglik(gmm, device, dtype)
        self.gs = None
        if gselect_model is not None and num_gselect > 0:
            if gselect_model.num_gauss != gmm.num_gauss:
                raise ValueError(f"gselect model has {gselect_model.num_gauss} Gaussians, the model "
                                 f"{gmm.num_gauss} (low-count removal must wait for the last iteration)")
            self.gs = DiagLoglik(gselect_model, device, dtype)
        self.k = num_gselect
        c, d = gmm.num_gauss, gmm.dim
        self.n = torch.zeros(c, dtype=torch.float64, device=self.dev)
        self.m1 = torch.zeros((c, d), dtype=torch.float64, device=self.dev)
        self.m2 = torch.zeros((c, d), dtype=torch.float64, device=self.dev)
        self.tot = torch.zeros((), dtype=torch.float64, device=self.dev)
        self.frames = 0

    def add(self, x: np.ndarray | torch.Tensor) -> None:
        x = torch.as_tensor(x, device=self.dev)
        ll = self.ll(x)
        if self.gs is not None:
            idx = gselect(self.gs(x), self.k)
            sel = ll.gather(1, idx)
            post, lse = softmax_lse(sel)
            self.tot += lse.sum()
            gam = torch.zeros((x.shape[0], self.gmm.num_gauss), dtype=torch.float64, device=self.dev)
            gam.scatter_(1, idx, post)
        else:
            gam, lse = softmax_lse(ll)
            self.tot += lse.sum()
        x64 = x.to(torch.float64)
        self.n += gam.sum(0)
        self.m1 += gam.T @ x64
        self.m2 += gam.T @ (x64 * x64)
        self.frames += x.shape[0]

    def stats(self) -> GmmStats:
        return GmmStats("diag", self.n.cpu().numpy(), self.m1.cpu().numpy(), self.m2.cpu().numpy(),
                        float(self.tot), float(self.frames))


class FullAccumulator:
    """E-step of a full GMM (``fgmm-global-acc-stats --gselect``): posteriors are the softmax of the full
    log-likelihoods over the top-K components of ``gselect_model`` (a diagonal model, Kaldi's
    ``fgmm-global-to-gmm`` of the initial full model), or over all components when it is ``None``.

    With gselect (``grouped``, the default when K < C) the T·K (frame, component) pairs are grouped by
    component (:class:`GaussianBlocks`); the same packed frames give the log-likelihoods
    (:meth:`FullLoglik.packed`) and the second-order stats ``Σγ xxᵀ``, one (D × block) @ (block × D)
    product per block: K·D² multiply-adds per frame for each instead of C·D(D+1)/2. Without gselect (or
    ``grouped=False``) the ``vech(xxᵀ)`` of the dense log-likelihoods also gives the stats as one
    (D(D+1)/2 × T) @ (T × C) GEMM. Products run in the evaluators' dtype and are added to float64 totals
    (docs/ivector.md §10.3: float32 products, float64 accumulation across blocks and chunks)."""

    def __init__(self, gmm: FullGmm, gselect_model: DiagGmm | None = None, num_gselect: int = 0,
                 device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32,
                 grouped: bool | None = None):
        self.gmm = gmm
        self.dev = torch.device(device)
        self.ll = FullLoglik(gmm, device, dtype)
        self.gs = None
        if gselect_model is not None and num_gselect > 0:
            if gselect_model.num_gauss != gmm.num_gauss:
                raise ValueError(f"gselect model has {gselect_model.num_gauss} Gaussians, the model "
                                 f"{gmm.num_gauss}")
            self.gs = DiagLoglik(gselect_model, device, dtype)
        self.k = num_gselect
        c, d = gmm.num_gauss, gmm.dim
        self.grouped = (grouped is not False) and self.gs is not None and self.k < c
        r, cc = tril_indices(d)
        self.flat = torch.as_tensor(r * d + cc, device=self.dev)
        self.n = torch.zeros(c, dtype=torch.float64, device=self.dev)
        self.m1 = torch.zeros((c, d), dtype=torch.float64, device=self.dev)
        self.m2p = torch.zeros((c, len(r)), dtype=torch.float64, device=self.dev)
        self.tot = torch.zeros((), dtype=torch.float64, device=self.dev)
        self.frames = 0

    def add(self, x: np.ndarray | torch.Tensor) -> None:
        x = torch.as_tensor(x, device=self.dev)
        xd = x.to(self.ll.dtype)
        c = self.gmm.num_gauss
        if self.grouped:
            idx = gselect(self.gs(x), self.k)
            blk = GaussianBlocks.of(idx.reshape(-1), c, GaussianBlocks.rows_for(idx.numel(), c))
            xp = blk.pack(xd, idx.shape[1])
            post, lse = softmax_lse(self.ll.packed(blk, xp, idx))
            prod = blk.weighted_outer(xp, post.reshape(-1).to(xd.dtype)).reshape(len(blk.gauss), -1)
            self.m2p.index_add_(0, blk.gauss, prod.index_select(1, self.flat).to(torch.float64))
        else:                                    # one vech(xxᵀ) for the log-likelihoods and the stats
            vt = vech_outer_t(xd, self.flat)
            ll = self.ll.dense(xd, vt)
            if self.gs is not None:
                idx = gselect(self.gs(x), self.k)
                post, lse = softmax_lse(ll.gather(1, idx))
            else:
                gam, lse = softmax_lse(ll)
        if self.gs is not None:
            gam = torch.zeros((x.shape[0], c), dtype=torch.float64, device=self.dev)
            gam.scatter_(1, idx, post)
        self.tot += lse.sum()
        x64 = x.to(torch.float64)
        self.n += gam.sum(0)
        self.m1 += gam.T @ x64
        if not self.grouped:
            self.m2p += (vt @ gam.to(vt.dtype)).T.to(torch.float64)
        self.frames += x.shape[0]

    def stats(self) -> GmmStats:
        c, d = self.gmm.num_gauss, self.gmm.dim
        packed = self.m2p.cpu().numpy()
        m2 = np.zeros((c, d, d))
        r, cc = tril_indices(d)
        m2[:, r, cc] = packed
        m2[:, cc, r] = packed
        return GmmStats("full", self.n.cpu().numpy(), self.m1.cpu().numpy(), m2, float(self.tot),
                        float(self.frames))


# --------------------------------------------------------------------------------------------------
# M-steps

@dataclass
class UpdateInfo:
    """What an M-step did: components updated / kept (too little data) / removed, floored elements."""

    updated: int = 0
    kept: list[int] = field(default_factory=list)
    removed: list[int] = field(default_factory=list)
    floored: int = 0

    def summary(self) -> str:
        s = f"{self.updated} Gaussians updated, {len(self.kept)} kept (too little data), " \
            f"{len(self.removed)} removed, {self.floored} variance elements/eigenvalues floored"
        return s


def _occupancy_rule(n: np.ndarray, min_occ: float, min_w: float, remove: bool
                    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Kaldi's per-component decision: (prob, update mask, removed indices, kept indices)."""
    c = n.shape[0]
    occ_sum = n.sum()
    prob = n / occ_sum if occ_sum > 0.0 else np.full(c, 1.0 / c)
    ok = (n > min_occ) & (prob > min_w)
    low = np.flatnonzero(~ok)
    removed = low[:c - 1] if remove else low[:0]     # never remove the last Gaussian
    kept = low[len(removed):]
    return prob, ok, removed, kept


def mle_diag_update(gmm: DiagGmm, stats: GmmStats, min_gaussian_occupancy: float = 10.0,
                    min_variance: float = 0.001, min_gaussian_weight: float = 1e-4,
                    remove_low_count_gaussians: bool = True) -> tuple[DiagGmm, UpdateInfo]:
    """``MleDiagGmmUpdate`` (all flags), float64: components with ``n > min_occ`` and ``p > min_w``
    get ``w = p``, ``μ = m1/n``, ``σ² = max(m2/n − μ², min_var)``; the others are removed (if enabled and
    fewer than C−1 are marked) or keep μ, σ² with ``w = max(p, min_w)``. Weights are renormalised only
    when something was removed."""
    if stats.kind != "diag" or stats.n.shape[0] != gmm.num_gauss:
        raise ValueError("mle_diag_update: statistics do not match the model")
    prob, ok, removed, kept = _occupancy_rule(stats.n, min_gaussian_occupancy, min_gaussian_weight,
                                              remove_low_count_gaussians)
    new = gmm.copy()
    nn = stats.n[ok][:, None]
    mean = stats.m1[ok] / nn
    var = stats.m2[ok] / nn - mean * mean
    floored = int((var < min_variance).sum())
    new.weights[ok] = prob[ok]
    new.means[ok] = mean
    new.vars[ok] = np.maximum(var, min_variance)
    new.weights[kept] = np.maximum(prob[kept], min_gaussian_weight)
    if len(removed):
        keep = np.setdiff1d(np.arange(gmm.num_gauss), removed)
        new = DiagGmm(new.weights[keep] / new.weights[keep].sum(), new.means[keep], new.vars[keep])
    return new, UpdateInfo(int(ok.sum()), kept.tolist(), removed.tolist(), floored)


def floor_eigenvalues(cov: np.ndarray, variance_floor: float = 0.001, max_condition: float = 1e4
                      ) -> tuple[np.ndarray, int]:
    """Kaldi's full-covariance floor, batched over (..., D, D): with ``Σ = U Λ Uᵀ`` set
    ``Σ ← U max(Λ, f) Uᵀ`` where ``f = max(variance_floor, max|λ|/max_condition)``."""
    lam, u = np.linalg.eigh(cov)
    f = np.maximum(variance_floor, np.abs(lam).max(-1, keepdims=True) / max_condition)
    floored = int((lam < f).sum())
    lam = np.maximum(lam, f)
    out = (u * lam[..., None, :]) @ np.swapaxes(u, -1, -2)
    return 0.5 * (out + np.swapaxes(out, -1, -2)), floored


def mle_full_update(gmm: FullGmm, stats: GmmStats, min_gaussian_occupancy: float = 100.0,
                    variance_floor: float = 0.001, max_condition: float = 1e4,
                    min_gaussian_weight: float = 1e-4, remove_low_count_gaussians: bool = False
                    ) -> tuple[FullGmm, UpdateInfo]:
    """``MleFullGmmUpdate``: as :func:`mle_diag_update` with ``Σ = M2/n − μμᵀ`` eigen-floored at
    ``max(variance_floor, max|λ|/max_condition)`` and min occupancy 100 (Kaldi's default)."""
    if stats.kind != "full" or stats.n.shape[0] != gmm.num_gauss:
        raise ValueError("mle_full_update: statistics do not match the model")
    prob, ok, removed, kept = _occupancy_rule(stats.n, min_gaussian_occupancy, min_gaussian_weight,
                                              remove_low_count_gaussians)
    new = gmm.copy()
    floored = 0
    if ok.any():
        nn = stats.n[ok]
        mean = stats.m1[ok] / nn[:, None]
        cov = stats.m2[ok] / nn[:, None, None] - mean[:, :, None] * mean[:, None, :]
        cov, floored = floor_eigenvalues(cov, variance_floor, max_condition)
        new.weights[ok] = prob[ok]
        new.means[ok] = mean
        new.covars[ok] = cov
    new.weights[kept] = np.maximum(prob[kept], min_gaussian_weight)
    if len(removed):
        keep = np.setdiff1d(np.arange(gmm.num_gauss), removed)
        new = FullGmm(new.weights[keep] / new.weights[keep].sum(), new.means[keep], new.covars[keep])
    return new, UpdateInfo(int(ok.sum()), kept.tolist(), removed.tolist(), floored)


# --------------------------------------------------------------------------------------------------
# splitting and initialisation (gmm-global-init-from-feats)

def split_gmm(gmm: DiagGmm, target: int, rng: np.random.Generator, perturb: float = 0.1,
              noise: np.ndarray | None = None) -> DiagGmm:
    """``DiagGmm::Split``: until ``target`` components, split the heaviest (first on ties, new ones
    included): halve its weight, append a copy, move the new mean by ``+perturb·σ⊙z`` and the old by
    ``−perturb·σ⊙z`` with ``z ~ N(0, I)``. ``noise`` (target−C, D) injects the draws."""
    c, d = gmm.num_gauss, gmm.dim
    if target <= c:
        return gmm.copy()
    w = np.concatenate([gmm.weights, np.zeros(target - c)])
    mu = np.concatenate([gmm.means, np.zeros((target - c, d))])
    var = np.concatenate([gmm.vars, np.zeros((target - c, d))])
    z = rng.standard_normal((target - c, d)) if noise is None else np.asarray(noise, dtype=np.float64)
    for i in range(c, target):      # sequential by definition; a loop over splits, not frames
        j = int(np.argmax(w[:i]))
        w[j] /= 2.0
        w[i] = w[j]
        var[i] = var[j]
        step = perturb * np.sqrt(var[j]) * z[i - c]
        mu[i] = mu[j] + step
        mu[j] = mu[j] - step
    return DiagGmm(w, mu, var)


def split_schedule(num_gauss: int, num_gauss_init: int, num_iters: int) -> list[int]:
    """Component counts trained in each init iteration when nothing is removed (docs/ivector.md §4.2)."""
    if num_gauss_init <= 0 or num_gauss_init > num_gauss:
        num_gauss_init = num_gauss
    half = num_iters // 2
    inc = (num_gauss - num_gauss_init) // half if half > 0 else 0
    cur, sizes = num_gauss_init, []
    for _ in range(num_iters):
        sizes.append(cur)
        cur = max(cur, min(num_gauss, cur + inc))
    return sizes


class FrameReservoir:
    """Reservoir sample of ``num_frames`` rows as ``gmm-global-init-from-feats`` keeps them: the first
    ``num_frames`` rows, then the n-th row (n > F, 1-based) overwrites a uniformly random slot with
    probability F/n. Vectorised per block of rows; draws come from ``rng``."""

    def __init__(self, num_frames: int, dim: int, rng: np.random.Generator):
        self.cap = num_frames
        self.buf = np.zeros((num_frames, dim), dtype=np.float32)
        self.seen = 0
        self.rng = rng

    def add(self, x: np.ndarray) -> None:
        t = x.shape[0]
        fill = min(max(self.cap - self.seen, 0), t)
        if fill:
            self.buf[self.seen:self.seen + fill] = x[:fill]
        rest = t - fill
        if rest:
            n = np.arange(self.seen + fill + 1, self.seen + t + 1, dtype=np.float64)
            slot = self.rng.integers(0, self.cap, size=rest)
            keep = self.rng.random(rest) < self.cap / n
            rows = np.flatnonzero(keep)
            if len(rows):
                s = slot[rows]
                # the last row written to a slot wins, as in the sequential definition
                _, last = np.unique(s[::-1], return_index=True)
                pick = rows[::-1][last]
                self.buf[slot[pick]] = x[fill + pick]
        self.seen += t

    def frames(self) -> np.ndarray:
        return self.buf[:min(self.seen, self.cap)]


def init_from_frames(frames: np.ndarray, num_gauss: int, rng: np.random.Generator,
                     frame_index: np.ndarray | None = None) -> DiagGmm:
    """``InitGmmFromRandomFrames``: means are ``num_gauss`` distinct random frames, every variance the
    global variance of ``frames`` (float64), weights uniform. ``frame_index`` injects the choice."""
    x = np.asarray(frames, dtype=np.float64)
    t, d = x.shape
    if t < 10 * num_gauss:
        raise DataError(f"too few frames to initialise {num_gauss} Gaussians: {t} < 10 x {num_gauss}")
    mean = x.mean(0)
    var = (x * x).mean(0) - mean * mean
    if var.max() <= 0.0:
        raise DataError("features do not have positive variance")
    idx = rng.choice(t, size=num_gauss, replace=False) if frame_index is None else np.asarray(frame_index)
    return DiagGmm(np.full(num_gauss, 1.0 / num_gauss), x[idx].copy(), np.tile(var, (num_gauss, 1)))


def train_init(frames: np.ndarray, num_gauss: int, num_gauss_init: int, num_iters: int,
               rng: np.random.Generator, min_gaussian_weight: float = 1e-4,
               remove_low_count_gaussians: bool = True, device: torch.device | str = "cpu",
               dtype: torch.dtype = torch.float32, chunk: int = 16384,
               init: DiagGmm | None = None) -> DiagGmm:
    """Phase A of the diagonal UBM (``gmm-global-init-from-feats``): random init with ``num_gauss_init``
    components, then ``num_iters`` EM iterations with full posteriors (MleDiagGmmUpdate with min
    occupancy 10, min variance 0.001, ``min_gaussian_weight``, removal as given) each followed by a split
    towards the schedule ``inc = (C − C0) // (num_iters // 2)``. Logs a line per iteration."""
    if num_gauss_init <= 0 or num_gauss_init > num_gauss:
        num_gauss_init = num_gauss
    half = num_iters // 2
    inc = (num_gauss - num_gauss_init) // half if half > 0 else 0
    gmm = init if init is not None else init_from_frames(frames, num_gauss_init, rng)
    cur = num_gauss_init
    dev = torch.device(device)
    xt = torch.as_tensor(np.asarray(frames, dtype=np.float32), device=dev)
    for it in range(num_iters):
        acc = DiagAccumulator(gmm, device=dev, dtype=dtype)
        for a in range(0, xt.shape[0], chunk):
            acc.add(xt[a:a + chunk])
        st = acc.stats()
        gmm, info = mle_diag_update(gmm, st, min_gaussian_weight=min_gaussian_weight,
                                    remove_low_count_gaussians=remove_low_count_gaussians)
        log.info(f"init iteration {it}: average log-likelihood per frame {st.avg_loglik:.6f} over "
                 f"{int(st.num_frames)} frames; {info.summary()}; {gmm.num_gauss} Gaussians")
        nxt = min(num_gauss, cur + inc)
        if nxt > gmm.num_gauss:
            gmm = split_gmm(gmm, nxt, rng)
            cur = nxt
    return gmm
