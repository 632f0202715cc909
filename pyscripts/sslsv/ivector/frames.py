"""Frame features of Kaldi's sid scripts (docs/ivector.md §3), per utterance:

    add-deltas --delta-window=3 --delta-order=2   (all frames)
    apply-cmvn-sliding --norm-vars=false --center=true --cmn-window=300   (all frames)
    select-voiced-frames                          (VAD selection last)
    [subsample-feats --n=N]                       (UBM training only)

The options live in the ``features`` section of ``conf/ivector.yaml``; the UBM steps write them to
``<dir>/frame_opts`` (YAML, the same keys) so that later stages read back exactly what the UBM saw, as
Kaldi's scripts do with ``delta_opts``.
"""

from __future__ import annotations

import dataclasses
import logging
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import kaldiio
import numpy as np
import yaml

from ..config import section
from ..features import add_deltas, apply_cmvn_sliding, select_voiced_frames, subsample_feats
from ..tables import DataError, atomic_path, c_sorted, read_scp

log = logging.getLogger(__name__)


@dataclass
class FrameOptions:
    """Options of the sid frame features (``features`` section of ``conf/ivector.yaml``)."""

    delta_window: int = 3
    delta_order: int = 2
    cmn_window: int = 300

    @classmethod
    def from_config(cls, path: str | os.PathLike | None, overrides: list[str] | tuple[str, ...] = ()
                    ) -> FrameOptions:
        """The ``features`` section of a YAML config (``None``: the defaults)."""
        return cls(**section(path, "features", dataclasses.asdict(cls()), overrides))

    def save(self, path: str | os.PathLike) -> None:
        """Write the options as YAML (``<dir>/frame_opts``), atomically."""
        with atomic_path(path) as tmp:
            Path(tmp).write_text(yaml.safe_dump(dataclasses.asdict(self), sort_keys=True))

    @classmethod
    def load(cls, path: str | os.PathLike) -> FrameOptions:
        """Read options written by :meth:`save` (a ``frame_opts`` file is a one-section config)."""
        p = Path(path)
        if not p.is_file():
            raise DataError(f"{p}: no such file")
        data = yaml.safe_load(p.read_text()) or {}
        if not isinstance(data, dict):
            raise DataError(f"{p}: expected a mapping of frame options")
        known = {f.name for f in dataclasses.fields(cls)}
        bad = sorted(set(data) - known)
        if bad:
            raise DataError(f"{p}: unknown frame option(s) {', '.join(bad)} "
                            f"(known: {', '.join(sorted(known))})")
        return cls(**data)

    @property
    def dim_factor(self) -> int:
        """Output dimension = input dimension x this factor."""
        return self.delta_order + 1


def sid_frames(feats: np.ndarray, vad: np.ndarray, opts: FrameOptions, where: str = "") -> np.ndarray:
    """Deltas, then sliding CMN (center, no variance norm) on ALL frames, then the voiced rows.

    Returns float32 ``(T_voiced, D*(delta_order+1))``; may have 0 rows. A VAD of the wrong length is a
    :class:`DataError` naming ``where``.
    """
    feats = np.asarray(feats, dtype=np.float32)
    vad = np.asarray(vad).reshape(-1)
    if vad.shape[0] != feats.shape[0]:
        raise DataError(f"{where + ': ' if where else ''}VAD has {vad.shape[0]} frames but the features "
                        f"have {feats.shape[0]}")
    x = add_deltas(feats, order=opts.delta_order, window=opts.delta_window)
    x = apply_cmvn_sliding(x, cmn_window=opts.cmn_window, center=True, norm_vars=False)
    return np.ascontiguousarray(select_voiced_frames(x, vad, where), dtype=np.float32)


def iter_frames(data_dir: str | os.PathLike, opts: FrameOptions, subsample: int = 1,
                utts: list[str] | None = None) -> Iterator[tuple[str, np.ndarray]]:
    """Yield ``(utt, frames)`` for the utterances of ``data_dir`` (``feats.scp`` + ``vad.scp``) in C order.

    ``utts`` restricts to those utterances (each must be in ``feats.scp``). ``subsample`` keeps voiced
    frames 0, n, 2n, ... An utterance without voiced frames (or empty after subsampling) is skipped with
    one warning line on stderr, as Kaldi's select-voiced-frames / subsample-feats do. A missing VAD entry
    is a :class:`DataError` naming ``vad.scp``.
    """
    data = Path(data_dir)
    feats_scp, vad_scp = data / "feats.scp", data / "vad.scp"
    feats = read_scp(feats_scp)
    vads = read_scp(vad_scp)
    if subsample < 1:
        raise ValueError(f"subsample must be >= 1, got {subsample}")
    if utts is None:
        keys = c_sorted(feats)
    else:
        missing = [u for u in utts if u not in feats]
        if missing:
            raise DataError(f"{feats_scp}: no features for utterance {missing[0]!r}"
                            + (f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""))
        keys = c_sorted(utts)
    for utt in keys:
        if utt not in vads:
            raise DataError(f"{vad_scp}: no VAD entry for utterance {utt!r} (it is in {feats_scp})")
        try:
            mat = kaldiio.load_mat(feats[utt])
        except Exception as e:  # noqa: BLE001 - any read failure names the table entry
            raise DataError(f"{feats_scp}: cannot read features of {utt!r} ({feats[utt]}): {e}") from e
        try:
            vad = kaldiio.load_mat(vads[utt])
        except Exception as e:  # noqa: BLE001
            raise DataError(f"{vad_scp}: cannot read the VAD of {utt!r} ({vads[utt]}): {e}") from e
        x = sid_frames(mat, vad, opts, where=f"{vad_scp}: {utt}")
        if x.shape[0] == 0:
            log.warning(f"{utt}: no voiced frames; skipping it")
            continue
        if subsample > 1:
            x = subsample_feats(x, subsample)
        yield utt, x
