"""Kaldi's i-vector extractor (augmented total-variability model, docs/ivector.md §6): initialisation from a
full UBM, the batched E-step, the auxiliary function, training accumulators, the M-step (projections,
floored covariances, minimum-divergence prior with diagonalisation) and i-vector extraction.

Model
-----
For Gaussian c: ``μ_c(w) = M_c w`` with ``M_c (D, S)``, covariance ``Σ_c`` (held as the precision
``P_c``), UBM weight ``w̄_c``; prior ``w ~ N(o e_0, I)`` with ``o`` the prior offset (100 at init).
The output i-vector of an utterance is ``E[w] − o e_0``.

Everything here is float64 (Kaldi's extractor, statistics and solves are double), on any torch device;
the batched E-step is ``γ @ U_packed`` (B×C @ C×S(S+1)/2), ``F @ Q`` (B×CD @ CD×S) and batched
Cholesky solves; the M-step is batched over Gaussians in chunks. No Python loop over Gaussians or
frames.

File format (``.ie``, a numpy ``.npz``, written atomically)
-------------------------------------------------------------
=================  ==================  =========  ====================================================
key                shape               dtype      meaning
=================  ==================  =========  ====================================================
``M``              (C, D, S)           float64    projections M_c (column 0 ≈ UBM mean / o)
``Sigma_inv``      (C, D, D)           float64    precisions P_c = Σ_c⁻¹ (symmetric)
``w``              (C,)                float64    UBM weights w̄_c (Kaldi's ``w_vec``)
``prior_offset``   ()                  float64    o
``auxf``           ()                  float64    auxf/frame of the E-step that produced this model
                                                  (NaN for an initial model); informative only
``format``         ()                  str        ``"sslsv-ivector-extractor-1"``
=================  ==================  =========  ====================================================

The UBM that aligns frames (§6.3) is not inside the file: the step scripts copy ``final.ubm`` into the
extractor directory next to ``final.ie``, as Kaldi does.

Accumulator format (``.acc``/``.npz``, per job; summed by :meth:`IvectorStats.add`)
-----------------------------------------------------------------------------------
``gamma`` (C,) f64, ``Y`` (C, D, S) f64, ``R`` (C, S(S+1)/2) **float32** (packed lower triangle, Kaldi
converts R to float when writing stats [subtle]), ``S2`` (C, D(D+1)/2) f64 (packed Σ_u S_uc), ``num_utts``,
``h`` (S,) f64, ``H`` (S, S) f64, ``auxf`` f64 (Σ_u A_u). At C = 2048, D = 72, S = 400 one file holds
Y 472 MB + R 657 MB (float32) + S2 43 MB ≈ 1.17 GB; in memory (float64) ≈ 1.83 GB.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from ..tables import DataError, atomic_path
from .stats import BatchStats, unvech, vech

FORMAT = "sslsv-ivector-extractor-1"
ACC_FORMAT = "sslsv-ivector-stats-1"
DBL_MIN = np.finfo(np.float64).tiny
LOG_2PI = math.log(2 * math.pi)


def _np(t: Any) -> np.ndarray:
    return t.detach().cpu().numpy() if isinstance(t, torch.Tensor) else np.asarray(t)


def _sym(a: torch.Tensor) -> torch.Tensor:
    return 0.5 * (a + a.transpose(-1, -2))


@dataclass
class EstepResult:
    """Posterior of w for a batch: mean (B,S), Cholesky factor of the precision L (B,S,S), and the
    per-utterance auxf part that does not need second-order stats (B,) (weight, gconst, linear and
    quadratic mean terms, prior), see :meth:`IvectorExtractor.estep`."""

    mean: torch.Tensor
    chol: torch.Tensor
    auxf_partial: torch.Tensor | None = None


@dataclass
class UpdateInfo:
    """What one M-step did (for the log)."""

    auxf_per_frame: float
    num_frames: float
    num_updated: int
    num_floored: int
    prior_offset: float
    impr_m: float = 0.0
    notes: list[str] = field(default_factory=list)


class IvectorExtractor:
    """Kaldi's ``IvectorExtractor`` with ``use_weights=false`` (float64 on ``device``)."""

    def __init__(self, M: torch.Tensor | np.ndarray, Sigma_inv: torch.Tensor | np.ndarray,
                 w: torch.Tensor | np.ndarray, prior_offset: float, device: torch.device | str = "cpu",
                 auxf: float = float("nan")) -> None:
        dev = torch.device(device)
        self.M = torch.as_tensor(M, dtype=torch.float64).to(dev)
        self.Sigma_inv = _sym(torch.as_tensor(Sigma_inv, dtype=torch.float64).to(dev))
        self.w = torch.as_tensor(w, dtype=torch.float64).to(dev)
        self.prior_offset = float(prior_offset)
        self.auxf = float(auxf)
        C, D, S = self.M.shape
        if self.Sigma_inv.shape != (C, D, D) or self.w.shape != (C,):
            raise ValueError(f"inconsistent extractor shapes: M {tuple(self.M.shape)}, Sigma_inv "
                             f"{tuple(self.Sigma_inv.shape)}, w {tuple(self.w.shape)}")
        self.compute_derived()

    # ---------------------------------------------------------------- basics
    @property
    def device(self) -> torch.device:
        return self.M.device

    @property
    def num_gauss(self) -> int:
        return self.M.shape[0]

    @property
    def feat_dim(self) -> int:
        return self.M.shape[1]

    @property
    def ivector_dim(self) -> int:
        return self.M.shape[2]

    def to(self, device: torch.device | str) -> IvectorExtractor:
        return IvectorExtractor(self.M, self.Sigma_inv, self.w, self.prior_offset, device, self.auxf)

    def compute_derived(self, chunk: int = 256) -> None:
        """Q_c = P_c M_c (C,D,S), U_c = M_cᵀ P_c M_c packed (C, S(S+1)/2), g_c = −½(ln|Σ_c| + D ln 2π)."""
        C, D, S = self.M.shape
        self.Q = torch.matmul(self.Sigma_inv, self.M)
        self.U_packed = torch.empty(C, S * (S + 1) // 2, dtype=torch.float64, device=self.device)
        for s in range(0, C, chunk):  # chunks over Gaussians bound the (chunk, S, S) temporary
            U = torch.matmul(self.M[s:s + chunk].transpose(1, 2), self.Q[s:s + chunk])
            self.U_packed[s:s + chunk] = vech(_sym(U))
        logdet_p = torch.linalg.slogdet(self.Sigma_inv)[1]
        self.gconst = 0.5 * logdet_p - 0.5 * D * LOG_2PI

    # ---------------------------------------------------------------- init / io
    @classmethod
    def init_from_ubm(cls, ubm: Any, ivector_dim: int, seed: int = 0,
                      random_block: np.ndarray | torch.Tensor | None = None,
                      device: torch.device | str = "cpu") -> IvectorExtractor:
        """``ivector-extractor-init``: o = 100, M_c[:,0] = μ_c/100, M_c[:,1:] ~ N(0,1) from a
        ``torch.Generator`` seeded with ``seed`` (or ``random_block`` (C, D, S−1) injected), Σ_c from the
        full UBM (``ubm.weights (C,), ubm.means (C,D), ubm.covars (C,D,D)``), w̄ = UBM weights."""
        means = torch.as_tensor(_np(ubm.means), dtype=torch.float64)
        covars = torch.as_tensor(_np(ubm.covars), dtype=torch.float64)
        weights = torch.as_tensor(_np(ubm.weights), dtype=torch.float64)
        C, D = means.shape
        if ivector_dim < 2:
            raise ValueError(f"ivector_dim must be ≥ 2, got {ivector_dim}")
        offset = 100.0
        if random_block is None:
            gen = torch.Generator().manual_seed(int(seed))
            random_block = torch.randn(C, D, ivector_dim - 1, generator=gen, dtype=torch.float64)
        rb = torch.as_tensor(random_block, dtype=torch.float64)
        if rb.shape != (C, D, ivector_dim - 1):
            raise ValueError(f"random_block must be {(C, D, ivector_dim - 1)}, got {tuple(rb.shape)}")
        M = torch.cat([means[:, :, None] / offset, rb], dim=2)
        Sigma_inv = torch.cholesky_inverse(torch.linalg.cholesky(_sym(covars)))
        return cls(M, Sigma_inv, weights, offset, device)

    def save(self, path: str | os.PathLike) -> None:
        """Write the ``.ie`` npz (format in the module docstring) atomically."""
        with atomic_path(path) as tmp, open(tmp, "wb") as f:
            np.savez(f, M=_np(self.M), Sigma_inv=_np(self.Sigma_inv), w=_np(self.w),
                     prior_offset=np.float64(self.prior_offset), auxf=np.float64(self.auxf),
                     format=np.array(FORMAT))

    @classmethod
    def load(cls, path: str | os.PathLike, device: torch.device | str = "cpu") -> IvectorExtractor:
        """Read an ``.ie`` npz written by :meth:`save` (or by ``convert_kaldi_ie.py``)."""
        try:
            with np.load(path, allow_pickle=False) as z:
                if "format" not in z or str(z["format"]) != FORMAT:
                    raise DataError(f"{path}: not an i-vector extractor file ({FORMAT})")
                return cls(z["M"], z["Sigma_inv"], z["w"], float(z["prior_offset"]), device,
                           float(z["auxf"]) if "auxf" in z else float("nan"))
        except (OSError, ValueError, KeyError) as e:
            raise DataError(f"{path}: cannot read i-vector extractor: {e}") from e

    # ---------------------------------------------------------------- E-step
    def estep(self, st: BatchStats, auxf: bool = True) -> EstepResult:
        """Posterior N(E[w], L⁻¹) of each utterance (§6.5), batched:
        ``L = I + Σ_c γ_c U_c`` (one (B,C)@(C,S(S+1)/2) GEMM), ``b = Σ_c Q_cᵀ f_c + o e_0``.

        With ``auxf`` also the per-utterance auxf (§6.6) *without* the terms that need the frames'
        second-order statistics, i.e. weight + gconst + ``mᵀa − ½mᵀBm − ½tr(VB)`` + prior (−KL).
        The missing part ``K + variance term`` equals ``−½ Σ_c tr(P_c S_c)`` (the two f-terms cancel),
        added from the summed second-order stats by :meth:`accumulate` (training), or replaced by
        :meth:`point_auxf` at extraction.
        """
        gamma, first = st.gamma.to(self.device, torch.float64), st.first.to(self.device, torch.float64)
        B = gamma.shape[0]
        C, D, S = self.M.shape
        eye = torch.eye(S, dtype=torch.float64, device=self.device)
        Bmat = unvech(gamma @ self.U_packed, S)                       # Σ_c γ_c U_c  (B,S,S)
        a = first.reshape(B, C * D) @ self.Q.reshape(C * D, S)        # Σ_c Q_cᵀ f_c (B,S)
        b = a.clone()
        b[:, 0] += self.prior_offset
        chol = torch.linalg.cholesky(Bmat + eye)
        mean = torch.cholesky_solve(b[..., None], chol)[..., 0]
        if not auxf:
            return EstepResult(mean, chol)
        var = torch.cholesky_inverse(chol)
        logdet_v = -2.0 * torch.log(torch.diagonal(chol, dim1=-2, dim2=-1)).sum(-1)
        tr_vb = (var * Bmat).sum((-1, -2))
        mean_terms = ((mean * a).sum(-1) - 0.5 * torch.einsum("bs,bst,bt->b", mean, Bmat, mean)
                      - 0.5 * tr_vb)
        d = mean.clone()
        d[:, 0] -= self.prior_offset
        prior = -0.5 * ((d * d).sum(-1) + torch.diagonal(var, dim1=-2, dim2=-1).sum(-1) - S - logdet_v)
        acoustic = gamma @ torch.log(self.w) + gamma @ self.gconst + mean_terms
        return EstepResult(mean, chol, acoustic + prior)

    def second_order_term(self, second: torch.Tensor) -> torch.Tensor:
        """``−½ Σ_c tr(P_c Ŝ_c)`` for summed packed second-order stats Ŝ (C, D(D+1)/2)."""
        D = self.feat_dim
        return -0.5 * (self.Sigma_inv * unvech(second.to(self.device, torch.float64), D)).sum()

    def point_auxf(self, st: BatchStats, w: torch.Tensor) -> torch.Tensor:
        """Auxf of point estimates ``w (B,S)`` without second-order stats (what ``ivector-extract``
        reports): weight + gconst + K + wᵀa − ½wᵀBw − ½DΣγ + prior −½(‖w − o e_0‖² + S ln 2π)."""
        gamma, first = st.gamma.to(self.device, torch.float64), st.first.to(self.device, torch.float64)
        B = gamma.shape[0]
        C, D, S = self.M.shape
        Bmat = unvech(gamma @ self.U_packed, S)
        a = first.reshape(B, C * D) @ self.Q.reshape(C * D, S)
        pf = torch.einsum("cde,bce->bcd", self.Sigma_inv, first)
        fpf = (pf * first).sum(-1)                                      # (B, C)
        safe = torch.where(gamma > 0, gamma, torch.ones_like(gamma))
        K = -0.5 * torch.where(gamma > 0, fpf / safe, torch.zeros_like(fpf)).sum(-1)
        mean_terms = K + (w * a).sum(-1) - 0.5 * torch.einsum("bs,bst,bt->b", w, Bmat, w)
        var_term = -0.5 * D * gamma.sum(-1)
        d = w.clone()
        d[:, 0] -= self.prior_offset
        prior = -0.5 * ((d * d).sum(-1) + S * LOG_2PI)
        return gamma @ torch.log(self.w) + gamma @ self.gconst + mean_terms + var_term + prior

    # ---------------------------------------------------------------- extraction
    def extract(self, st: BatchStats, acoustic_weight: float = 1.0, max_count: float = 0.0,
                return_objf_change: bool = False) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
        """``ivector-extract`` (§6.9): posteriors scaled by the acoustic weight (or to ``max_count`` when
        ``max_count > 0`` and ``aw·Σγ > max_count``), point estimate ``E[w] = L⁻¹b``, output
        ``E[w] − o e_0`` as float32 (B, S). With ``return_objf_change`` also the auxf change of the
        point estimate relative to the prior mean (≥ 0), per utterance."""
        gamma = st.gamma.to(self.device, torch.float64)
        tot = gamma.sum(-1) * acoustic_weight
        scale = torch.full_like(tot, float(acoustic_weight))
        if max_count > 0:
            over = tot > max_count
            scale = torch.where(over, acoustic_weight * max_count / torch.where(over, tot, 1.0), scale)
        if acoustic_weight != 1.0 or max_count > 0:
            st = BatchStats(st.gamma.to(self.device, torch.float64), st.first.to(self.device,
                            torch.float64)).scaled(scale)
        res = self.estep(st, auxf=False)
        iv = res.mean.clone()
        iv[:, 0] -= self.prior_offset
        out = _np(iv).astype(np.float32)
        if not return_objf_change:
            return out
        w0 = torch.zeros_like(res.mean)
        w0[:, 0] = self.prior_offset
        change = self.point_auxf(st, res.mean) - self.point_auxf(st, w0)
        return out, _np(change)


class IvectorStats:
    """Accumulators of ``ivector-extractor-acc-stats`` (§6.7), float64 on a device (R packed)."""

    def __init__(self, num_gauss: int, feat_dim: int, ivector_dim: int,
                 device: torch.device | str = "cpu") -> None:
        C, D, S = num_gauss, feat_dim, ivector_dim
        dev = torch.device(device)
        z = dict(dtype=torch.float64, device=dev)
        self.gamma = torch.zeros(C, **z)
        self.Y = torch.zeros(C, D, S, **z)
        self.R = torch.zeros(C, S * (S + 1) // 2, **z)
        self.S2 = torch.zeros(C, D * (D + 1) // 2, **z)
        self.num_utts = 0.0
        self.h = torch.zeros(S, **z)
        self.H = torch.zeros(S, S, **z)
        self.auxf = 0.0

    @classmethod
    def like(cls, ie: IvectorExtractor) -> IvectorStats:
        return cls(ie.num_gauss, ie.feat_dim, ie.ivector_dim, ie.device)

    def accumulate(self, ie: IvectorExtractor, st: BatchStats) -> EstepResult:
        """E-step of a batch with model ``ie`` and its contribution to every accumulator
        (Kaldi's cached R update is the one (C,B)@(B,S(S+1)/2) GEMM here)."""
        if st.second is None:
            raise ValueError("training needs second-order statistics (batch_stats(second_order=True))")
        res = ie.estep(st, auxf=True)
        gamma = st.gamma.to(ie.device, torch.float64)
        first = st.first.to(ie.device, torch.float64)
        B = gamma.shape[0]
        C, D, S = ie.M.shape
        var = torch.cholesky_inverse(res.chol)
        eww = var + res.mean[:, :, None] * res.mean[:, None, :]
        self.gamma += gamma.sum(0)
        self.Y.view(C * D, S).addmm_(first.reshape(B, C * D).T, res.mean)   # in place: no C·D·S temporary
        self.R.addmm_(gamma.T, vech(eww))                                   # Kaldi's cached R update
        self.S2 += st.second.to(ie.device, torch.float64)
        self.num_utts += B
        self.h += res.mean.sum(0)
        self.H += eww.sum(0)
        self.auxf += float(res.auxf_partial.sum() + ie.second_order_term(st.second))
        return res

    def add(self, other: IvectorStats) -> None:
        for k in ("gamma", "Y", "R", "S2", "h", "H"):
            getattr(self, k).add_(getattr(other, k).to(self.gamma.device))
        self.num_utts += other.num_utts
        self.auxf += other.auxf

    def save(self, path: str | os.PathLike) -> None:
        """Write the accumulators (npz, R as float32 as Kaldi writes it) atomically."""
        with atomic_path(path) as tmp, open(tmp, "wb") as f:
            np.savez(f, gamma=_np(self.gamma), Y=_np(self.Y), R=_np(self.R).astype(np.float32),
                     S2=_np(self.S2), num_utts=np.float64(self.num_utts), h=_np(self.h), H=_np(self.H),
                     auxf=np.float64(self.auxf), format=np.array(ACC_FORMAT))

    @classmethod
    def load(cls, path: str | os.PathLike, device: torch.device | str = "cpu") -> IvectorStats:
        try:
            with np.load(path, allow_pickle=False) as z:
                if "format" not in z or str(z["format"]) != ACC_FORMAT:
                    raise DataError(f"{path}: not an i-vector accumulator file ({ACC_FORMAT})")
                C, D, S = z["Y"].shape
                out = cls(C, D, S, device)
                for k in ("gamma", "Y", "R", "S2", "h", "H"):
                    getattr(out, k).copy_(torch.as_tensor(z[k].astype(np.float64)))
                out.num_utts = float(z["num_utts"])
                out.auxf = float(z["auxf"])
                return out
        except (OSError, ValueError, KeyError) as e:
            raise DataError(f"{path}: cannot read i-vector accumulators: {e}") from e

    # ---------------------------------------------------------------- M-step
    def update(self, ie: IvectorExtractor, gaussian_min_count: float = 100.0,
               variance_floor_factor: float = 0.1, diagonalize: bool = True,
               round_r_to_float: bool = True, chunk: int = 256) -> tuple[IvectorExtractor, UpdateInfo]:
        """``ivector-extractor-est`` (§6.8): (a) M by the robust quadratic solve, (b) Σ from the new M with
        the generalised floor, (c) minimum-divergence prior (Householder + diagonalisation), then the
        derived quantities. Returns a new extractor; ``ie`` is not modified.

        ``round_r_to_float`` rounds R to float32 first, as the M-step sees it in Kaldi after the stats
        went through a file [subtle]."""
        if self.num_utts <= 0:
            raise ValueError("no utterances accumulated")
        dev = ie.device
        C, D, S = ie.M.shape
        R = self.R.to(dev)
        if round_r_to_float:
            R = R.float().double()
        tot_frames = float(self.gamma.sum())
        auxf = self.auxf / tot_frames
        used = torch.nonzero(self.gamma.to(dev) >= gaussian_min_count).flatten()
        notes = []
        if len(used) < C:
            notes.append(f"{C - len(used)} of {C} Gaussians have count < {gaussian_min_count} "
                         "and keep their M and Sigma")
        if len(used) == 0:
            raise ValueError(f"no Gaussian has count ≥ {gaussian_min_count}; cannot update")
        M = ie.M.clone()
        Sigma_inv = ie.Sigma_inv.clone()
        # (a) projections
        impr = 0.0
        for s in range(0, len(used), chunk):
            idx = used[s:s + chunk]
            Mi, i_impr = solve_quadratic_matrix(unvech(R[idx], S), self.Y.to(dev)[idx], Sigma_inv[idx],
                                                M[idx])
            M[idx] = Mi
            impr += float(i_impr.sum())
        # (b) covariances with the generalised floor
        raw = torch.empty(len(used), D, D, dtype=torch.float64, device=dev)
        g_used = self.gamma.to(dev)[used]
        for s in range(0, len(used), chunk):
            idx = used[s:s + chunk]
            Mi, Yi, Ri = M[idx], self.Y.to(dev)[idx], unvech(R[idx], S)
            YMt = Yi @ Mi.transpose(1, 2)
            Sp = unvech(self.S2.to(dev)[idx], D) - YMt - YMt.transpose(1, 2) + Mi @ Ri @ Mi.transpose(1, 2)
            raw[s:s + chunk] = _sym(Sp)
        floor = variance_floor_factor * raw.sum(0) / g_used.sum()
        raw = raw / g_used[:, None, None]
        lam, vec = torch.linalg.eigh(_sym(floor))
        lam = torch.clamp(lam, min=1e-4 * float(lam.abs().max()))
        floor = _sym((vec * lam) @ vec.T)
        new_sigma, num_floored = apply_generalised_floor(raw, floor)
        Sigma_inv[used] = _sym(torch.cholesky_inverse(torch.linalg.cholesky(new_sigma)))
        # (c) prior
        V, offset = min_divergence_transform(self.h.to(dev) / self.num_utts, self.H.to(dev) / self.num_utts,
                                             M, Sigma_inv, ie.w if diagonalize else None)
        M = torch.linalg.solve(V.T, M.transpose(1, 2)).transpose(1, 2)   # M_c V⁻¹
        new = IvectorExtractor(M, Sigma_inv, ie.w, offset, dev, auxf)
        return new, UpdateInfo(auxf, tot_frames, len(used), num_floored, offset, impr, notes)


def solve_quadratic_matrix(R: torch.Tensor, Y: torch.Tensor, P: torch.Tensor, M0: torch.Tensor,
                           K: float = 1e4, eps: float = 1e-40) -> tuple[torch.Tensor, torch.Tensor]:
    """Kaldi's ``SolveQuadraticMatrixProblem`` with diagonal preconditioning, batched over Gaussians:
    maximise ``F(M) = tr(Mᵀ P Y) − ½ tr(P M R Mᵀ)`` from ``M0``; eigenvalues of the preconditioned R
    floored at ``max(eps, λ_max/K)``; the step is kept only if it does not decrease F.
    Shapes R (G,S,S), Y (G,D,S), P (G,D,D), M0 (G,D,S). Returns (M, improvement (G,))."""
    dg = torch.diagonal(R, dim1=-2, dim2=-1).clamp(min=1e3 * DBL_MIN)
    d = torch.sqrt(dg)                                              # (G,S)
    Rt = R / (d[:, :, None] * d[:, None, :])
    Yt = Y / d[:, None, :]
    Mt = M0 * d[:, None, :]
    Ybar = Yt - Mt @ Rt
    lam, U = torch.linalg.eigh(_sym(Rt))
    lam = torch.clamp(lam, min=0.0)                                  # SymPosSemiDefEig floors at 0
    lmax = lam.max(-1, keepdim=True).values
    lam = torch.maximum(lam, torch.clamp(lmax / K, min=eps))
    Mnew = Mt + ((Ybar @ U) / lam[:, None, :]) @ U.transpose(1, 2)

    def objf(Mx: torch.Tensor) -> torch.Tensor:
        PY = P @ Yt
        return (Mx * PY).sum((-1, -2)) - 0.5 * (P * (Mx @ Rt @ Mx.transpose(1, 2))).sum((-1, -2))

    before, after = objf(Mt), objf(Mnew)
    ok = after >= before
    Mt = torch.where(ok[:, None, None], Mnew, Mt)
    return Mt / d[:, None, :], torch.where(ok, after - before, torch.zeros_like(after))


def apply_generalised_floor(sigma: torch.Tensor, floor: torch.Tensor) -> tuple[torch.Tensor, int]:
    """Kaldi's ``SpMatrix::ApplyFloor(F)``, batched: with ``L = chol(F)``, ``A = L⁻¹ Σ L⁻ᵀ = V diag(a) Vᵀ``,
    ``a ← max(a, 1)``, ``Σ ← L V diag(a) Vᵀ Lᵀ`` (smallest change making Σ − F PSD).
    Returns the floored (G,D,D) and the number of floored eigenvalues."""
    L = torch.linalg.cholesky(floor)
    Lb = L.expand_as(sigma)
    X = torch.linalg.solve_triangular(Lb, sigma, upper=False)              # L⁻¹ Σ
    A = torch.linalg.solve_triangular(Lb, X.transpose(1, 2), upper=False)  # L⁻¹ Σ L⁻ᵀ
    a, V = torch.linalg.eigh(_sym(A))
    n = int((a < 1.0).sum())
    a = torch.clamp(a, min=1.0)
    LV = Lb @ V
    return _sym((LV * a[:, None, :]) @ LV.transpose(1, 2)), n


def min_divergence_transform(mean: torch.Tensor, second: torch.Tensor, M: torch.Tensor,
                             Sigma_inv: torch.Tensor, weights: torch.Tensor | None,
                             chunk: int = 256) -> tuple[torch.Tensor, float]:
    """The prior re-estimation of §6.8(c): V (S,S) with ``V C̄ Vᵀ = I``, ``V μ̄ = o' e_0``, rows 1.. rotated
    to diagonalise ``Σ_c w̄_c U_c`` (when ``weights`` is given, with U from ``M``, ``Sigma_inv``).
    ``mean`` = h/N, ``second`` = H/N. Returns (V, o')."""
    S = mean.shape[0]
    covar = _sym(second - mean[:, None] * mean[None, :])
    s, P = torch.linalg.eigh(covar)
    s = torch.clamp(s, min=1e-7)
    T = P.T / torch.sqrt(s)[:, None]                              # diag(s^-½) Pᵀ
    z = T @ mean
    norm = float(torch.linalg.norm(z))
    if norm == 0.0:
        raise ValueError("the mean i-vector is zero after whitening; cannot place the prior offset")
    x = z / norm
    e0 = torch.zeros(S, dtype=mean.dtype, device=mean.device)
    e0[0] = 1.0
    if 1.0 - float(x[0]) > 1e-12:
        alpha = 1.0 / (math.sqrt(2.0) * math.sqrt(1.0 - float(x[0])))
        a = alpha * (x - e0)
        Hh = torch.eye(S, dtype=mean.dtype, device=mean.device) - 2.0 * a[:, None] * a[None, :]
    else:
        Hh = torch.eye(S, dtype=mean.dtype, device=mean.device)
    V = Hh @ T
    if weights is not None and S > 1:
        Ubar = torch.zeros(S, S, dtype=mean.dtype, device=mean.device)
        for c0 in range(0, M.shape[0], chunk):
            Mi = M[c0:c0 + chunk]
            PM = Sigma_inv[c0:c0 + chunk] @ Mi
            Ubar += torch.einsum("c,cds,cdt->st", weights[c0:c0 + chunk], Mi, PM)
        Bk_inv = torch.linalg.inv(V[1:, 1:])
        G = _sym(Bk_inv.T @ _sym(Ubar)[1:, 1:] @ Bk_inv)
        g, Q = torch.linalg.eigh(G)
        order = torch.argsort(g.abs(), descending=True, stable=True)
        Q = Q[:, order]
        V = torch.cat([V[:1], Q.T @ V[1:]], dim=0)
    offset = float((V @ mean)[0])
    return V, offset
