"""Options of the i-vector extractor steps (the ``extractor`` section of ``conf/ivector.yaml``) and the
per-utterance job parts; no torch import, so option queries from shell scripts start fast."""

from __future__ import annotations

import os
from pathlib import Path

from ..datadir import partition
from ..tables import DataError, c_sorted, read_scp

# Keys after longest_utts are optional in the file (defaults here; Kaldi's values).
EXTRACTOR_DEFAULTS = {
    "ivector_dim": 100,            # S
    "num_iters": 5,                # training iterations (Kaldi script default 10, voxceleb 5)
    "num_gselect": 20,             # Gaussians selected per frame by the diagonal UBM
    "min_post": 0.025,             # posteriors below this are pruned (then renormalised)
    "posterior_scale": 1.0,        # scale-post
    "longest_utts": 0,             # train on the N longest utterances; 0 = all
    "gaussian_min_count": 100.0,   # ivector-extractor-est: Gaussians with less count keep M, Sigma
    "variance_floor_factor": 0.1,  # ivector-extractor-est: floor = factor x average covariance
    "batch_size": 64,              # utterances per batched E-step (memory bound)
    "acoustic_weight": 1.0,        # ivector-extract --acoustic-weight
    "max_count": 0.0,              # ivector-extract --max-count (0 = off)
}


def part_utts(data_dir: str | os.PathLike, part: str | None, table: str = "feats.scp") -> list[str] | None:
    """Utterances of job ``J/N`` (balanced per-utterance parts of ``table`` in C order), or None (all)."""
    if not part:
        return None
    try:
        j, n = (int(v) for v in part.split("/"))
    except ValueError:
        raise DataError(f"--part must be J/N, got {part!r}") from None
    if not 1 <= j <= n:
        raise DataError(f"--part {part}: J must be in 1..N")
    utts = c_sorted(read_scp(Path(data_dir) / table))
    return partition({u: u for u in utts}, n, per_utt=True)[j - 1]
