"""Vectors to cluster: read from an scp (``ivector.scp``), a Kaldi ark, a ``.npy`` matrix or a directory
holding one of those, normalised as the papers compare (per-sample L2, or per-dimension
standardisation), and the augmented views of CAMSAT aligned to them."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from ..tables import DataError, read_map, read_vector_scp

SCP_NAMES = ("ivector.scp", "embedding.scp", "xvector.scp", "vectors.scp")


def read_vectors(path: str | os.PathLike) -> tuple[list[str], np.ndarray]:
    """Keys and an (N, d) float64 matrix from ``path``:

    - a directory: its ``ivector.scp`` (or ``embedding.scp``, ``xvector.scp``, ``vectors.scp``);
    - ``*.scp``: a Kaldi scp of vectors;
    - ``*.ark``: a Kaldi binary/text archive of vectors;
    - ``*.npy``: an (N, d) matrix; keys from ``<stem>.keys`` (one per line) beside it, else ``0..N-1``.
    """
    p = Path(path)
    if p.is_dir():
        for name in SCP_NAMES:
            if (p / name).is_file():
                return read_vector_scp(p / name)
        raise DataError(f"{p}: no {' / '.join(SCP_NAMES)} in this directory")
    if not p.is_file():
        raise DataError(f"{p}: no such file")
    if p.suffix == ".npy":
        x = np.load(p)
        if x.ndim != 2:
            raise DataError(f"{p}: expected an (N, dim) matrix, got shape {x.shape}")
        keys_file = p.with_suffix(".keys")
        if keys_file.is_file():
            keys = keys_file.read_text().split()
            if len(keys) != len(x):
                raise DataError(f"{keys_file}: {len(keys)} keys for {len(x)} rows of {p}")
        else:
            keys = [str(i) for i in range(len(x))]
        x = np.asarray(x, dtype=np.float64)
        if not np.all(np.isfinite(x)):
            bad = int(np.flatnonzero(~np.isfinite(x).all(axis=1))[0])
            raise DataError(f"{p}: row {bad} ({keys[bad]}) has non-finite values")
        return keys, x
    if p.suffix == ".ark":
        import kaldiio

        keys, rows = [], []
        for i, (k, v) in enumerate(kaldiio.load_ark(str(p))):
            v = np.asarray(v, dtype=np.float64).reshape(-1) if np.ndim(v) == 2 and len(v) == 1 else v
            if np.ndim(v) != 1:
                raise DataError(f"{p}: entry {i + 1} ({k}) is not a vector (shape {np.shape(v)})")
            if rows and len(v) != len(rows[0]):
                raise DataError(f"{p}: entry {i + 1} ({k}) has dimension {len(v)}, the first {len(rows[0])}")
            keys.append(k)
            rows.append(np.asarray(v, dtype=np.float64))
        if not rows:
            raise DataError(f"{p}: no vectors")
        return keys, np.vstack(rows)
    return read_vector_scp(p)


def normalize(x: np.ndarray, how: str = "l2", reference: np.ndarray | None = None) -> np.ndarray:
    """``l2``: each vector scaled to unit length (the papers' "clean" input); ``standard``: each dimension
    to zero mean and unit variance over ``reference`` (default ``x`` itself; scikit-learn's
    StandardScaler, the papers' "noisy" input); ``none``: unchanged. Returns float32 (what the models
    consume)."""
    x = np.asarray(x, dtype=np.float64)
    if how == "l2":
        n = np.linalg.norm(x, axis=1, keepdims=True)
        out = x / np.maximum(n, 1e-12)
    elif how == "standard":
        ref = x if reference is None else np.asarray(reference, dtype=np.float64)
        sd = ref.std(axis=0)
        out = (x - ref.mean(axis=0)) / np.where(sd > 0, sd, 1.0)
    elif how == "none":
        out = x
    else:
        raise DataError(f"unknown input normalisation {how!r} (l2, standard, none)")
    return out.astype(np.float32)


def align_views(keys: list[str], view_keys: list[str], view_x: np.ndarray,
                utt2uniq: dict[str, str] | None = None) -> tuple[list[str], np.ndarray, np.ndarray]:
    """Arrange augmented copies as views of the clean vectors.

    A copy belongs to the clean utterance ``utt2uniq[copy]`` when ``utt2uniq`` is given, else to the
    clean key it extends as ``<utt>-<type>`` (stage 2's naming). The view type is the suffix after the
    clean key. Returns ``(types, views, present)``: ``views`` is (V, N, d) in ``keys`` order, with the
    clean vector standing in where an utterance lacks a type; ``present`` (V, N) marks the real copies.
    """
    index = {k: i for i, k in enumerate(keys)}
    owner, kind = [], []
    for k in view_keys:
        base = utt2uniq.get(k) if utt2uniq is not None else None
        if base is None:
            base = k.rsplit("-", 1)[0] if "-" in k else None
        if base not in index or not k.startswith(base + "-"):
            owner.append(-1)
            kind.append("")
            continue
        owner.append(index[base])
        kind.append(k[len(base) + 1:])
    types = sorted({t for t, o in zip(kind, owner, strict=True) if o >= 0})
    if not types:
        raise DataError("none of the augmented vectors belongs to a clustered utterance "
                        f"(e.g. {view_keys[0]!r}; expected '<utt>-<type>' or an utt2uniq)")
    return types, *_place(types, owner, kind, view_x, len(keys))


def _place(types: list[str], owner: list[int], kind: list[str], view_x: np.ndarray, n: int
           ) -> tuple[np.ndarray, np.ndarray]:
    tpos = {t: j for j, t in enumerate(types)}
    views = np.full((len(types), n, view_x.shape[1]), np.nan)
    present = np.zeros((len(types), n), dtype=bool)
    o = np.asarray(owner)
    ok = o >= 0
    t = np.array([tpos.get(k, -1) for k in kind])
    views[t[ok], o[ok]] = view_x[ok]
    present[t[ok], o[ok]] = True
    return views, present


def read_views(keys: list[str], raw_x: np.ndarray, path: str | os.PathLike,
               utt2uniq: str | os.PathLike | None = None, how: str = "l2"
               ) -> tuple[list[str], np.ndarray, np.ndarray]:
    """Read the augmented vectors at ``path`` (see :func:`read_vectors`), align them to ``keys``
    (:func:`align_views`) and normalise them as the clean ones (``raw_x``, the clean matrix before
    normalisation; standardisation uses its statistics so both live in one space). Where a copy is
    missing the clean vector stands in. Returns ``(types, views (V, N, d) float32, present)``."""
    vkeys, vx = read_vectors(path)
    if vx.shape[1] != raw_x.shape[1]:
        raise DataError(f"{path}: vectors of dimension {vx.shape[1]}, the clustered ones {raw_x.shape[1]}")
    u2u = read_map(utt2uniq) if utt2uniq else None
    types, views, present = align_views(keys, vkeys, vx, u2u)
    clean = normalize(raw_x, how)
    out = np.repeat(clean[None], len(types), axis=0)
    for v in range(len(types)):
        if present[v].any():
            out[v, present[v]] = normalize(views[v, present[v]], how, reference=raw_x)
    return types, out, present
