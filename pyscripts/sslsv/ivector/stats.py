"""Baum–Welch statistics of utterances for the i-vector extractor (docs/ivector.md §6.4), batched over
utterances, computed from sparse frame posteriors.

Posteriors are held sparse, as Kaldi's posterior archives are: per utterance three equal-length arrays
``(frame, gauss, post)`` listing only the non-zero entries (after gselect and pruning at min-post). A
dense ``(idx (T,K), post (T,K))`` pair from :class:`sslsv.ivector.posteriors.UbmPosteriors` is turned into
that form by :func:`sparsify` (pruned entries are exactly 0 and are dropped).

All statistics are float64 (Kaldi keeps ``IvectorExtractorUtteranceStats`` in double), whatever the
dtype of the frames (float32 features) and posteriors (float32, as Kaldi stores them).
The work is ``index_add_`` over the non-zero posterior entries: no Python loop over frames or
Gaussians; memory is bounded by ``chunk`` entries at a time.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from .gmm import GaussianBlocks

SparsePost = tuple[np.ndarray, np.ndarray, np.ndarray]  # (frame int, gauss int, post float32)


def sparsify(idx: torch.Tensor | np.ndarray, post: torch.Tensor | np.ndarray) -> SparsePost:
    """Dense ``(idx (T,K), post (T,K))`` with pruned entries 0 → sparse ``(frame, gauss, post)``,
    frame-major (the order of Kaldi's posterior lists), float32 posteriors."""
    idx = idx.cpu().numpy() if isinstance(idx, torch.Tensor) else np.asarray(idx)
    post = post.cpu().numpy() if isinstance(post, torch.Tensor) else np.asarray(post)
    t, k = np.nonzero(post)
    return t.astype(np.int32), idx[t, k].astype(np.int32), post[t, k].astype(np.float32)


def vech_indices(dim: int, device: torch.device | str = "cpu") -> tuple[torch.Tensor, torch.Tensor]:
    """Row and column indices of the packed lower triangle, row-major (Kaldi's SpMatrix order:
    (0,0), (1,0), (1,1), (2,0), ...)."""
    r, c = torch.tril_indices(dim, dim, device=device)
    return r, c


def vech(a: torch.Tensor) -> torch.Tensor:
    """Packed lower triangle of the symmetric matrices ``a (..., n, n)`` → ``(..., n(n+1)/2)``."""
    r, c = vech_indices(a.shape[-1], a.device)
    return a[..., r, c]


def unvech(v: torch.Tensor, dim: int) -> torch.Tensor:
    """Inverse of :func:`vech`: ``(..., n(n+1)/2)`` → symmetric ``(..., n, n)``."""
    r, c = vech_indices(dim, v.device)
    out = v.new_zeros(v.shape[:-1] + (dim, dim))
    out[..., r, c] = v
    out[..., c, r] = v
    return out


@dataclass
class BatchStats:
    """Statistics of a batch of B utterances (float64).

    gamma  (B, C)       zeroth order γ_c = Σ_t γ_tc
    first  (B, C, D)    first order f_c = Σ_t γ_tc x_t (uncentred)
    second (C, D(D+1)/2) or None: Σ_u Σ_t γ_tc vech(x_t x_tᵀ), summed over the batch (training only:
                        the per-utterance D×D matrices are never needed separately, see
                        :meth:`IvectorExtractor.estep`)
    """

    gamma: torch.Tensor
    first: torch.Tensor
    second: torch.Tensor | None = None

    def scaled(self, factor: torch.Tensor) -> BatchStats:
        """Statistics of posteriors multiplied by ``factor`` (B,) per utterance (extraction's
        acoustic weight / max count); only for first-order statistics."""
        if self.second is not None:
            raise ValueError("per-utterance scaling of summed second-order stats is undefined")
        f = factor.to(self.gamma.dtype).reshape(-1, 1)
        return BatchStats(self.gamma * f, self.first * f[..., None], None)


def batch_stats(frames: list[np.ndarray | torch.Tensor], posts: list[SparsePost], num_gauss: int,
                device: torch.device | str = "cpu", second_order: bool = False,
                chunk: int = 1 << 15) -> BatchStats:
    """Statistics of B utterances from their frames ``(T_u, D)`` and sparse posteriors.

    ``chunk`` bounds the number of non-zero posterior entries processed at once (the second-order
    statistics use a (chunk/64 + C, 64, D) buffer).
    """
    if len(frames) != len(posts):
        raise ValueError(f"{len(frames)} frame matrices but {len(posts)} posterior lists")
    B = len(frames)
    dev = torch.device(device)
    D = int(frames[0].shape[1]) if B else 0
    C = num_gauss
    gamma = torch.zeros(B * C, dtype=torch.float64, device=dev)
    first = torch.zeros(B * C, D, dtype=torch.float64, device=dev)
    second = torch.zeros(C, D * (D + 1) // 2, dtype=torch.float64, device=dev) if second_order else None
    if B == 0:
        return BatchStats(gamma.reshape(0, C), first.reshape(0, C, D), second)
    # Concatenate the batch: frame offsets make the per-utterance frame indices global.
    lens = [int(f.shape[0]) for f in frames]
    offs = np.concatenate([[0], np.cumsum(lens)[:-1]])
    x = torch.cat([torch.as_tensor(np.asarray(f) if not isinstance(f, torch.Tensor) else f)
                   .to(dev, torch.float64) for f in frames])
    for u, (t, g, _) in enumerate(posts):
        if len(t) and (int(np.max(t)) >= lens[u] or int(np.min(t)) < 0):
            raise ValueError(f"utterance {u} of the batch: posterior frame index {int(np.max(t))} "
                             f"out of range for {lens[u]} frames")
        if len(g) and (int(np.max(g)) >= C or int(np.min(g)) < 0):
            raise ValueError(f"utterance {u} of the batch: Gaussian index out of range [0, {C})")
    tt = torch.as_tensor(np.concatenate([np.asarray(t, np.int64) + o
                                         for (t, _, _), o in zip(posts, offs, strict=True)]), device=dev)
    gg = torch.as_tensor(np.concatenate([np.asarray(g, np.int64) for _, g, _ in posts]), device=dev)
    uu = torch.as_tensor(np.concatenate([np.full(len(t), u, np.int64) for u, (t, _, _) in enumerate(posts)]),
                         device=dev)
    pp = torch.as_tensor(np.concatenate([np.asarray(p, np.float32) for _, _, p in posts]),
                         device=dev).to(torch.float64)
    for s in range(0, len(pp), chunk):
        t, g, u, p = tt[s:s + chunk], gg[s:s + chunk], uu[s:s + chunk], pp[s:s + chunk]
        xs = x.index_select(0, t)
        key = u * C + g
        gamma.index_add_(0, key, p)
        first.index_add_(0, key, p[:, None] * xs)
        if second is not None:
            second += vech(_grouped_scatter(xs, p, g, C))
    return BatchStats(gamma.reshape(B, C), first.reshape(B, C, D), second)


def _grouped_scatter(x: torch.Tensor, p: torch.Tensor, g: torch.Tensor, C: int, block: int = 64
                     ) -> torch.Tensor:
    """``Σ_{n: g_n = c} p_n x_n x_nᵀ`` for every c (C, D, D) as one batched GEMM over the entries grouped
    by Gaussian (:class:`sslsv.ivector.gmm.GaussianBlocks`): each block one (D × block) @ (block × D)
    product, summed per Gaussian. Much faster than forming per-entry outer products (memory traffic of
    N·D² elements)."""
    D = x.shape[1]
    out = x.new_zeros(C, D, D)
    if len(g) == 0:
        return out
    blk = GaussianBlocks.of(g, C, block)
    return out.index_add_(0, blk.gauss, blk.weighted_outer(blk.pack(x), p))
