"""Distance from every vector to its k-th nearest other vector: IMSAT's per-sample VAT radius
``eps_i = prop_eps · δ_i`` (docs/algorithms.md §3.1) and the noise scale of the i-vector-space views.

Exact, not approximate:

1. **Candidates.** The N×N squared-distance matrix ``‖a‖² + ‖b‖² − 2a·b`` of the mean-centred rows
   (centring keeps the norms small, so the float32 cancellation stays small) is computed in float32
   blocks of ``chunk_size × chunk_size`` with torch; each block serves both its row block and (by
   symmetry) its column block, so only the upper triangle of blocks is computed (half the matrix
   products) and memory stays O(chunk² + N·m). Each row keeps its ``m = k' + 8`` smallest entries
   (self excluded by index, so duplicate rows are each other's neighbours at distance 0). With faiss
   importable and N ≥ ``FAISS_MIN_N`` (or ``backend="faiss"``), an exact ``IndexFlatL2`` search (on
   the GPU when faiss has GPU support and ``device`` is CUDA) gives the candidates instead.
2. **Refinement.** The candidates' distances are recomputed exactly in float64 as ``‖a − b‖`` and sorted,
   so the result does not carry float32 cancellation error; the 8 spare candidates absorb float32
   ranking errors between near-equal distances. Both backends therefore give the same numbers.

``include_self_offset=True`` reproduces IMSAT's ``calculate_distance.py``: it sets the self-distance to
1000, sorts, and reads index ``k`` (0-based), which is the (k+1)-th nearest *other* point (the 11th for
k = 10), not the k-th the paper names.

Speed: the cost is the float32 products, N²·d multiply-adds halved by the symmetry (the selection is
a comparison per entry plus a few small top-k merges, run single-threaded on the CPU because torch's
small parallel ops stall when cores are shared). N = 100,000, d = 400, k = 10 on the project's 2-core
AMD EPYC took 93 s wall / 91 s CPU while other jobs kept the load at about 4.5 (one core's worth);
the products alone are 4.4 TFLOP, about 31 s at the 140 GFLOP/s the two cores reach when idle, so an
idle 2-core machine needs roughly 45-50 s. The full VoxCeleb2 set (1.09M rows, 120× the work) wants
a GPU (``device="cuda"``; blocks of 16384 there) or faiss.

Cache (``cache=<file>.npy``): the distances (float64, (N,)) and a sidecar ``<file>.npy.json`` holding
N, d, k, the offset flag and a fingerprint of X (shape, a strided sample of rows and the column sums).
A cache is used only when all match; otherwise the distances are recomputed and both files rewritten
atomically (the sidecar is removed first and written last, so a crash never pairs old metadata with
new distances).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch

from ...device import resolve_device
from ...tables import atomic_path

FAISS_MIN_N = 50_000     # backend="auto" uses faiss (when importable) from this many rows up
SPARE = 8                # extra float32 candidates per row, re-ranked exactly in float64
_CACHE_VERSION = 1


def kth_neighbor_distance(X: np.ndarray, k: int = 10, *, include_self_offset: bool = False,
                          chunk_size: int | None = None, device: str = "cpu",
                          cache: str | os.PathLike | None = None, backend: str = "auto") -> np.ndarray:
    """Euclidean distance (float64, shape (N,)) from every row of ``X`` (N, d) to its k-th nearest other
    row; with ``include_self_offset`` to its (k+1)-th (IMSAT's off-by-one, see the module docstring).

    ``device``: ``cpu``, ``cuda``, ``auto`` (see :func:`sslsv.device.resolve_device`). ``chunk_size``:
    the block edge (default 4096 on the CPU, 16384 on CUDA). ``backend``:
    ``auto`` (faiss when importable and N ≥ ``FAISS_MIN_N``), ``torch`` or ``faiss``. ``cache``: an
    ``.npy`` path, loaded when it matches this X, k and flag, else written.
    """
    X = np.asarray(X)
    if X.ndim != 2:
        raise ValueError(f"X must be (N, d), got shape {X.shape}")
    n = X.shape[0]
    kk = int(k) + int(bool(include_self_offset))
    if k < 1 or kk > n - 1:
        raise ValueError(f"k={k}{' (+1 for the IMSAT offset)' if include_self_offset else ''} needs "
                         f"1 <= k and at least k+1 rows; X has {n}")
    if backend not in ("auto", "torch", "faiss"):
        raise ValueError(f"backend must be auto, torch or faiss, got {backend!r}")
    if not np.isfinite(X).all():
        raise ValueError("X contains NaN or infinite values")

    meta = None
    if cache is not None:
        meta = {"version": _CACHE_VERSION, "n": n, "d": int(X.shape[1]), "k": int(k),
                "include_self_offset": bool(include_self_offset), "fingerprint": fingerprint(X)}
        hit = _load_cache(Path(cache), meta)
        if hit is not None:
            return hit

    dev = resolve_device(device)
    m = min(kk + SPARE, n - 1)
    # centred (in float64, by row blocks) before the float32 search: the distances stay the same, the
    # cancellation in ‖a‖² + ‖b‖² − 2a·b shrinks
    mean = X.mean(axis=0, dtype=np.float64)
    X32 = np.empty(X.shape, dtype=np.float32)
    for a in range(0, n, 65536):
        X32[a:a + 65536] = X[a:a + 65536] - mean
    use_faiss = backend == "faiss" or (backend == "auto" and n >= FAISS_MIN_N and _faiss() is not None)
    cand = _faiss_candidates(X32, m, dev) if use_faiss else _torch_candidates(X32, m, dev, chunk_size)
    dist = _refine(X, cand, dev)
    out = np.sort(dist, axis=1)[:, kk - 1]

    if cache is not None:
        _write_cache(Path(cache), out, meta)
    return out


# --------------------------------------------------------------------------- candidate search


def _torch_candidates(X32: np.ndarray, m: int, dev: torch.device, chunk_size: int | None) -> np.ndarray:
    """Indices (N, m) of the m nearest other rows by float32 squared distance, blockwise and symmetric.

    Pass 1 fills every row's list from its own diagonal block (top-k). Pass 2 visits each off-diagonal
    block pair once; an entry enters row i's list only if it beats the row's current m-th distance
    (a comparison, not a top-k, so the selection costs little next to the matrix product), and the
    few entries that do are merged into the lists by a small top-k.
    """
    n = X32.shape[0]
    if chunk_size is None:
        chunk_size = 16384 if dev.type == "cuda" else 4096
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
    b = min(int(chunk_size), n)
    starts = list(range(0, n, b))
    threads = torch.get_num_threads()
    # On the CPU only the matrix products run multi-threaded: the bookkeeping ops are many and small,
    # and torch's OpenMP regions for them slow down by orders of magnitude when the cores are shared.
    serial = dev.type == "cpu" and threads > 1
    with torch.no_grad(), _num_threads(1 if serial else threads):
        Xt = torch.from_numpy(X32).to(dev)
        sq = (Xt * Xt).sum(1)
        best_v = torch.full((n, m), float("inf"), dtype=torch.float32, device=dev)
        best_i = torch.zeros((n, m), dtype=torch.int64, device=dev)

        def block(i0: int, i1: int, j0: int, j1: int) -> torch.Tensor:
            with _num_threads(threads):
                d2 = torch.addmm(sq[None, j0:j1], Xt[i0:i1], Xt[j0:j1].T, alpha=-2)
            return d2.add_(sq[i0:i1, None])

        for i0 in starts:
            i1 = min(i0 + b, n)
            t = min(m, i1 - i0 - 1)
            if t > 0:
                d2 = block(i0, i1, i0, i1).fill_diagonal_(float("inf"))
                v, i = d2.topk(t, dim=1, largest=False)
                best_v[i0:i1, :t] = v
                best_i[i0:i1, :t] = i + i0
        for a, i0 in enumerate(starts):
            i1 = min(i0 + b, n)
            for j0 in starts[a + 1:]:
                j1 = min(j0 + b, n)
                d2 = block(i0, i1, j0, j1)
                r, c = (d2 < best_v[i0:i1].amax(1)[:, None]).nonzero(as_tuple=True)
                if r.numel():                                   # rows of block i (r is sorted)
                    _merge(best_v, best_i, i0, i1, r, c + j0, d2[r, c])
                r, c = (d2 < best_v[j0:j1].amax(1)[None, :]).nonzero(as_tuple=True)
                if r.numel():                                   # rows of block j: group by column
                    c, o = torch.sort(c, stable=True)
                    r = r[o]
                    _merge(best_v, best_i, j0, j1, c, r + i0, d2[r, c])
        return best_i.cpu().numpy()


@contextlib.contextmanager
def _num_threads(n: int) -> Iterator[None]:
    """Run a block with torch's intra-op thread count set to ``n``, restored afterwards."""
    before = torch.get_num_threads()
    if n != before:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        if torch.get_num_threads() != before:
            torch.set_num_threads(before)


def _merge(best_v: torch.Tensor, best_i: torch.Tensor, r0: int, r1: int, rows: torch.Tensor,
           idx: torch.Tensor, vals: torch.Tensor) -> None:
    """Merge new entries (row − r0, neighbour index, squared distance), sorted by row, into the lists of
    the m best of rows r0..r1−1, in place."""
    m = best_v.shape[1]
    nr = r1 - r0
    counts = torch.bincount(rows, minlength=nr)
    pos = torch.arange(rows.numel(), device=rows.device) - (torch.cumsum(counts, 0) - counts)[rows]
    width = int(counts.max())
    pad_v = torch.full((nr, width), float("inf"), dtype=best_v.dtype, device=best_v.device)
    pad_i = torch.zeros((nr, width), dtype=best_i.dtype, device=best_i.device)
    pad_v[rows, pos] = vals
    pad_i[rows, pos] = idx
    tv, ti = torch.cat([best_v[r0:r1], pad_v], dim=1).topk(m, dim=1, largest=False, sorted=False)
    best_i[r0:r1] = torch.cat([best_i[r0:r1], pad_i], dim=1).gather(1, ti)
    best_v[r0:r1] = tv


def _faiss():
    try:
        import faiss
    except ImportError:
        return None
    return faiss


def _faiss_candidates(X32: np.ndarray, m: int, dev: torch.device) -> np.ndarray:
    """Indices (N, m) of the m nearest other rows from an exact faiss ``IndexFlatL2`` search of m + 1."""
    faiss = _faiss()
    if faiss is None:
        raise ImportError("backend='faiss' but faiss is not installed")
    n, d = X32.shape
    index = faiss.IndexFlatL2(d)
    if dev.type == "cuda" and hasattr(faiss, "StandardGpuResources") and faiss.get_num_gpus() > 0:
        res = faiss.StandardGpuResources()
        index = faiss.index_cpu_to_gpu(res, dev.index or 0, index)
    index.add(X32)
    _, ind = index.search(X32, m + 1)
    ind = np.asarray(ind, dtype=np.int64)
    drop = ind == np.arange(n)[:, None]
    drop[~drop.any(axis=1), -1] = True       # self lost among equal distances: drop the farthest instead
    return ind[~drop].reshape(n, m)


# --------------------------------------------------------------------------- exact refinement


def _refine(X: np.ndarray, cand: np.ndarray, dev: torch.device) -> np.ndarray:
    """Exact float64 distances ‖x_i − x_cand[i, j]‖, shape (N, m), in row blocks of about 64 MB."""
    n, m = cand.shape
    d = X.shape[1]
    rows = max(1, (1 << 23) // max(1, m * d))
    with torch.no_grad():
        Xd = torch.from_numpy(np.ascontiguousarray(X, dtype=np.float64)).to(dev)
        C = torch.from_numpy(cand).to(dev)
        out = torch.empty((n, m), dtype=torch.float64, device=dev)
        for a in range(0, n, rows):
            e = min(a + rows, n)
            out[a:e] = torch.linalg.vector_norm(Xd[C[a:e]].sub_(Xd[a:e, None, :]), dim=2)
        return out.cpu().numpy()


# --------------------------------------------------------------------------- cache


def fingerprint(X: np.ndarray) -> str:
    """Cheap identity of a matrix: shape, up to 4096 evenly strided rows and the column sums."""
    X32 = np.ascontiguousarray(X, dtype=np.float32)
    h = hashlib.blake2b(digest_size=16)
    h.update(repr(X32.shape).encode())
    h.update(np.ascontiguousarray(X32[:: max(1, len(X32) // 4096)]).tobytes())
    h.update(X32.sum(axis=0, dtype=np.float64).tobytes())
    return h.hexdigest()


def _meta_path(path: Path) -> Path:
    return path.with_name(path.name + ".json")


def _load_cache(path: Path, meta: dict) -> np.ndarray | None:
    mp = _meta_path(path)
    if not (path.is_file() and mp.is_file()):
        return None
    try:
        with open(mp, encoding="utf-8") as f:
            if json.load(f) != meta:
                return None
        arr = np.load(path, allow_pickle=False)
    except (OSError, ValueError):
        return None
    if arr.shape != (meta["n"],) or arr.dtype != np.float64 or not np.isfinite(arr).all():
        return None
    return arr


def _write_cache(path: Path, dist: np.ndarray, meta: dict) -> None:
    mp = _meta_path(path)
    mp.unlink(missing_ok=True)
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        np.save(f, np.ascontiguousarray(dist, dtype=np.float64))
    with atomic_path(mp) as tmp, open(tmp, "w", encoding="utf-8") as f:
        json.dump(meta, f)
