"""The work of one job of ``steps/train_ivector_extractor.sh`` / ``steps/extract_ivectors.sh``: frame
posteriors of a data split (computed once), accumulators of a split for one iteration, the M-step over
summed accumulators, a whole training in one process (``--nj 1``), and extraction to a Kaldi archive.

Posterior files (``post.<job>.npz``, one per split, written atomically) hold only the non-zero entries,
as Kaldi's posterior archives do:

=============  =========  =======  ======================================================
key            shape      dtype    meaning
=============  =========  =======  ======================================================
``utts``       (U,)       str      utterance ids, C order
``num_frames`` (U,)       int64    voiced frames of each utterance (checked on reuse)
``offsets``    (U+1,)     int64    entries of utterance u are ``[offsets[u], offsets[u+1])``
``frame``      (N,)       int32    frame index within the utterance
``gauss``      (N,)       int32    Gaussian index
``post``       (N,)       float32  posterior (pruned at min-post, renormalised, scaled)
=============  =========  =======  ======================================================

About 12 bytes per surviving entry (typically 2–4 per frame after pruning at 0.025).
"""

from __future__ import annotations

import logging
import math
import os
import time
from collections.abc import Iterator
from pathlib import Path

import kaldiio
import numpy as np
import torch

from ..tables import DataError, atomic_path, c_sorted
from .extractor import IvectorExtractor, IvectorStats, UpdateInfo
from .extractor_opts import EXTRACTOR_DEFAULTS, part_utts  # noqa: F401 (re-exported)
from .frames import FrameOptions, iter_frames
from .gmm import FullGmm
from .posteriors import PosteriorError, UbmPosteriors
from .stats import SparsePost, batch_stats, sparsify

POST_FORMAT = "sslsv-sparse-posteriors-1"
log = logging.getLogger(__name__)

def _sparse_posteriors(comp: UbmPosteriors, data_dir: str | os.PathLike, opts: FrameOptions,
                       utts: list[str] | None, group_frames: int = 8192
                       ) -> Iterator[tuple[str, np.ndarray, SparsePost]]:
    """``(utt, frames, sparse posteriors)`` of each utterance; one whose posteriors cannot be computed
    (no voiced frames, non-finite likelihoods) is skipped with a warning naming it.

    Consecutive utterances are evaluated together, ``group_frames`` frames at a time (one GEMM and one
    top-K instead of one per utterance: the per-call overhead dominated on short utterances); a frame's
    posteriors do not depend on the other frames, so the result is the same. A group with a bad frame is
    redone utterance by utterance, so only the utterance that has it is skipped."""
    group: list[tuple[str, np.ndarray]] = []

    def one(utt: str, x: np.ndarray) -> Iterator[tuple[str, np.ndarray, SparsePost]]:
        try:
            idx, post = comp(x)
        except PosteriorError as e:
            log.warning(f"{utt}: {e}")
            return
        yield utt, x, sparsify(idx, post)

    def flush() -> Iterator[tuple[str, np.ndarray, SparsePost]]:
        try:
            idx, post = comp(np.concatenate([x for _, x in group]))
        except PosteriorError:
            for item in group:
                yield from one(*item)
            return
        a = 0
        for utt, x in group:
            b = a + x.shape[0]
            yield utt, x, sparsify(idx[a:b], post[a:b])
            a = b

    total = 0
    for utt, x in iter_frames(data_dir, opts, utts=utts):
        group.append((utt, x))
        total += x.shape[0]
        if total >= group_frames:
            yield from flush()
            group, total = [], 0
    if group:
        yield from flush()


def compute_posteriors(ubm: FullGmm, data_dir: str | os.PathLike, opts: FrameOptions,
                       out: str | os.PathLike, num_gselect: int = 20, min_post: float = 0.025,
                       scale: float = 1.0, device: torch.device | str = "cpu",
                       utts: list[str] | None = None) -> int:
    """Posteriors of every utterance of ``data_dir`` under the UBM (§6.3), written sparse to ``out``.
    Utterances without voiced frames or with bad posteriors are skipped with a warning.
    Returns the number of utterances written."""
    comp = UbmPosteriors(ubm, num_gselect=num_gselect, min_post=min_post, scale=scale, device=device)
    names, nfr, fr, ga, po = [], [], [], [], []
    for utt, x, (t, g, p) in _sparse_posteriors(comp, data_dir, opts, utts):
        names.append(utt)
        nfr.append(x.shape[0])
        fr.append(t)
        ga.append(g)
        po.append(p)
    offsets = np.concatenate([[0], np.cumsum([len(t) for t in fr])]).astype(np.int64)
    cat = (lambda a, dt: np.concatenate(a).astype(dt) if a else np.zeros(0, dt))  # noqa: E731
    with atomic_path(out) as tmp, open(tmp, "wb") as f:
        np.savez(f, utts=np.array(names, dtype=str), num_frames=np.array(nfr, np.int64), offsets=offsets,
                 frame=cat(fr, np.int32), gauss=cat(ga, np.int32), post=cat(po, np.float32),
                 format=np.array(POST_FORMAT))
    return len(names)


def load_posteriors(path: str | os.PathLike) -> dict[str, tuple[int, SparsePost]]:
    """``utt → (num_frames, (frame, gauss, post))`` from a file of :func:`compute_posteriors`."""
    try:
        with np.load(path, allow_pickle=False) as z:
            if str(z["format"]) != POST_FORMAT:
                raise DataError(f"{path}: not a sparse posterior file ({POST_FORMAT})")
            o = z["offsets"]
            fr, ga, po = z["frame"], z["gauss"], z["post"]
            return {str(u): (int(n), (fr[o[i]:o[i + 1]], ga[o[i]:o[i + 1]], po[o[i]:o[i + 1]]))
                    for i, (u, n) in enumerate(zip(z["utts"], z["num_frames"], strict=False))}
    except (OSError, KeyError, ValueError) as e:
        raise DataError(f"{path}: cannot read posteriors: {e}") from e


def iter_batches(data_dir: str | os.PathLike, opts: FrameOptions, posts: dict[str, tuple[int, SparsePost]],
                 batch_size: int) -> Iterator[tuple[list[str], list[np.ndarray], list[SparsePost]]]:
    """Batches of (utts, frames, posteriors) of the utterances that have posteriors, in C order."""
    utts, xs, ps = [], [], []
    for utt, x in iter_frames(data_dir, opts, utts=c_sorted(posts)):
        n, p = posts[utt]
        if x.shape[0] != n:
            raise DataError(f"{data_dir}: utterance {utt!r} has {x.shape[0]} voiced frames but its "
                            f"posteriors were computed on {n} (features changed; recompute posteriors)")
        utts.append(utt)
        xs.append(x)
        ps.append(p)
        if len(utts) == batch_size:
            yield utts, xs, ps
            utts, xs, ps = [], [], []
    if utts:
        yield utts, xs, ps


def accumulate(ie: IvectorExtractor, data_dir: str | os.PathLike, opts: FrameOptions,
               posts: dict[str, tuple[int, SparsePost]], batch_size: int = 64,
               acc: IvectorStats | None = None) -> IvectorStats:
    """Accumulators of one split for one iteration (E-step with ``ie``), added to ``acc`` if given."""
    acc = IvectorStats.like(ie) if acc is None else acc
    for _, xs, ps in iter_batches(data_dir, opts, posts, batch_size):
        acc.accumulate(ie, batch_stats(xs, ps, ie.num_gauss, ie.device, second_order=True))
    return acc


def log_update(it: int, info: UpdateInfo, previous: float) -> str:
    """The per-iteration line: auxf/frame of the E-step that produced model ``it + 1`` and its change."""
    change = "" if math.isnan(previous) else f" (change {info.auxf_per_frame - previous:+.6f})"
    return (f"iteration {it}: auxf/frame {info.auxf_per_frame:.6f}{change} over {info.num_frames:.0f} "
            f"frames; {info.num_updated} Gaussians updated, {info.num_floored} variance eigenvalues "
            f"floored, prior offset {info.prior_offset:.4f}")


def estimate(model: str | os.PathLike, accs: list[str | os.PathLike], out: str | os.PathLike, it: int,
             device: torch.device | str = "cpu", gaussian_min_count: float = 100.0,
             variance_floor_factor: float = 0.1) -> str:
    """``ivector-extractor-sum-accs | ivector-extractor-est``: sum the per-job accumulators (each went
    through float32 R on disk), round R to float32 again (the summed file), update, write ``out``."""
    ie = IvectorExtractor.load(model, device)
    total = None
    for a in accs:
        st = IvectorStats.load(a, device)
        if total is None:
            total = st
        else:
            total.add(st)
    if total is None:
        raise DataError("no accumulator files given")
    new, info = total.update(ie, gaussian_min_count=gaussian_min_count,
                             variance_floor_factor=variance_floor_factor)
    for n in info.notes:
        log.warning(n)
    new.save(out)
    return log_update(it, info, ie.auxf)


def train_in_process(directory: str | os.PathLike, data_dir: str | os.PathLike, opts: FrameOptions,
                     post_files: list[str | os.PathLike], num_iters: int, device: torch.device | str = "cpu",
                     batch_size: int = 64, gaussian_min_count: float = 100.0,
                     variance_floor_factor: float = 0.1) -> None:
    """All remaining iterations in one process (``--iter-jobs 1``): resumes from the highest ``<k>.ie``
    in ``directory`` (``0.ie`` must exist) and writes ``<k+1>.ie`` after each iteration. Each iteration
    reads the parts' posterior files in turn (memory: one part's posteriors)."""
    d = Path(directory)
    done = [k for k in range(num_iters + 1) if (d / f"{k}.ie").is_file()]
    if 0 not in done:
        raise DataError(f"{d}/0.ie: no initial model")
    start = max(k for k in range(num_iters + 1) if all(j in done for j in range(k + 1)))
    if start:
        log.info(f"resuming from {d}/{start}.ie")
    if len(post_files) == 1:
        posts = load_posteriors(post_files[0])                   # one part: read it once
    ie = IvectorExtractor.load(d / f"{start}.ie", device)
    for it in range(start, num_iters):
        t0 = time.time()
        acc = IvectorStats.like(ie)
        for f in post_files:
            accumulate(ie, data_dir, opts, posts if len(post_files) == 1 else load_posteriors(f), batch_size,
                       acc)
        prev = ie.auxf
        ie, info = acc.update(ie, gaussian_min_count=gaussian_min_count,
                              variance_floor_factor=variance_floor_factor)
        for n in info.notes:
            log.warning(n)
        ie.save(d / f"{it + 1}.ie")
        log.info(log_update(it, info, prev) + f" [{time.time() - t0:.1f} s]")


def extract(ie: IvectorExtractor, ubm: FullGmm, data_dir: str | os.PathLike, opts: FrameOptions,
            ark: str | os.PathLike, scp: str | os.PathLike, num_gselect: int = 20, min_post: float = 0.025,
            scale: float = 1.0, acoustic_weight: float = 1.0, max_count: float = 0.0,
            batch_size: int = 64, utts: list[str] | None = None) -> tuple[int, float]:
    """``ivector-extract`` over a data dir: i-vectors (float32) to ``ark``/``scp`` (kaldiio, written
    under temporary names then renamed). Returns (utterances, mean objf change per frame)."""
    comp = UbmPosteriors(ubm, num_gselect=num_gselect, min_post=min_post, scale=scale, device=ie.device)
    ark, scp = Path(ark), Path(scp)
    n, tot_change, tot_frames = 0, 0.0, 0.0
    with atomic_path(scp) as tscp, atomic_path(ark) as tark:  # ark renamed first
        with kaldiio.WriteHelper(f"ark,scp:{tark},{tscp}") as w:
            batch: list[tuple[str, np.ndarray, SparsePost]] = []

            def flush() -> None:
                nonlocal n, tot_change, tot_frames
                st = batch_stats([b[1] for b in batch], [b[2] for b in batch], ie.num_gauss, ie.device)
                iv, change = ie.extract(st, acoustic_weight, max_count, return_objf_change=True)
                for (utt, _, _), v in zip(batch, iv, strict=False):
                    w(utt, v)
                n += len(batch)
                tot_change += float(change.sum())
                tot_frames += float(st.gamma.sum())
                batch.clear()

            for item in _sparse_posteriors(comp, data_dir, opts, utts):
                batch.append(item)
                if len(batch) == batch_size:
                    flush()
            if batch:
                flush()
        # the scp names the temporary ark; point it at the final name
        text = Path(tscp).read_text().replace(str(tark), str(ark))
        Path(tscp).write_text(text)
    return n, tot_change / max(tot_frames, 1.0)
