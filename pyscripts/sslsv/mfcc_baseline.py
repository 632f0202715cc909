"""A naive speaker-clustering baseline: per-utterance mean and standard deviation of MFCCs, k-means
with k = number of speakers, scored against the true speakers (NMI, ARI, purity, Hungarian-matched
accuracy). It measures how hard a corpus is for clustering: with channel-free speaker traits it is far
from perfect, while a corpus whose speakers differ mostly by channel would make it near-perfect.

MFCCs are Kaldi's, through kaldi-native-fbank with the options of Kaldi's VoxCeleb recipe (24 cepstra,
30 mel bins, 20-7600 Hz, no edge snipping, no dither, int16-scale input); when the data dir already
has ``feats.scp`` and ``vad.scp``, those features are used instead, voiced frames only.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from .audio import read_audio
from .features.kaldi_options import read_mfcc_config
from .features.mfcc import compute_mfcc
from .tables import DataError, c_sorted, read_map, read_scp

# Kaldi egs/voxceleb/v1 conf/mfcc.conf (as the recipe's conf/mfcc.conf), without dither.
VOXCELEB_MFCC = ["--frame-length=25", "--low-freq=20", "--high-freq=7600", "--num-mel-bins=30",
                 "--num-ceps=24", "--snip-edges=false", "--dither=0"]


def mfcc(samples: np.ndarray, rate: int) -> np.ndarray:
    """Kaldi MFCCs (frames x 24) of int16-scale samples, with the recipe's conf/mfcc.conf and no dither."""
    cfg = read_mfcc_config(None, [*VOXCELEB_MFCC, f"--sample-frequency={rate}"])
    return compute_mfcc(samples, rate, cfg)


def mean_std(frames: np.ndarray) -> np.ndarray:
    """Concatenated per-dimension mean and standard deviation of a frames x dims matrix."""
    return np.concatenate([frames.mean(axis=0), frames.std(axis=0)])


def utterance_stats(data_dir: str | os.PathLike) -> tuple[list[str], np.ndarray]:
    """Per-utterance mean+std of MFCCs for every utterance of a data dir (C order).

    Uses ``feats.scp`` with ``vad.scp`` (voiced frames) when both exist, else computes MFCCs from
    ``wav.scp``.
    """
    d = Path(data_dir)
    if (d / "feats.scp").is_file() and (d / "vad.scp").is_file():
        import kaldiio

        feats, vads = read_scp(d / "feats.scp"), read_scp(d / "vad.scp")
        utts = c_sorted(feats)
        rows = []
        for u in utts:
            if u not in vads:
                raise DataError(f"{d / 'vad.scp'}: no entry for utterance {u} of feats.scp")
            f = np.asarray(kaldiio.load_mat(feats[u]))
            v = np.asarray(kaldiio.load_mat(vads[u])) > 0.5
            if len(v) != len(f):
                raise DataError(f"{d}: {u} has {len(f)} feature frames but {len(v)} VAD values")
            rows.append(mean_std(f[v] if v.sum() >= 2 else f))
        return utts, np.stack(rows)
    wavs = read_scp(d / "wav.scp")
    utts = c_sorted(wavs)
    rows = []
    for u in utts:
        x, sr = read_audio(wavs[u], f"{d / 'wav.scp'}: {u}")
        rows.append(mean_std(mfcc(x, sr)))
    return utts, np.stack(rows)


def clustering_scores(truth: list[str] | np.ndarray, pred: list[int] | np.ndarray) -> dict[str, float]:
    """NMI and ARI (scikit-learn), purity, and accuracy after the best one-to-one matching of
    clusters to speakers (Hungarian algorithm on the contingency table)."""
    from scipy.optimize import linear_sum_assignment
    from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score
    from sklearn.metrics.cluster import contingency_matrix

    c = contingency_matrix(truth, pred)  # speakers x clusters
    rows, cols = linear_sum_assignment(c, maximize=True)
    n = c.sum()
    return {"nmi": float(normalized_mutual_info_score(truth, pred)),
            "ari": float(adjusted_rand_score(truth, pred)),
            "purity": float(c.max(axis=0).sum() / n),
            "accuracy": float(c[rows, cols].sum() / n)}


def kmeans_baseline(data_dir: str | os.PathLike, seed: int = 0) -> dict[str, float]:
    """Cluster the utterances of ``data_dir`` by k-means (k = number of speakers, 10 restarts) on
    standardised MFCC mean+std and score the clusters against its ``utt2spk``."""
    from sklearn.cluster import KMeans
    from sklearn.preprocessing import StandardScaler

    d = Path(data_dir)
    utt2spk = read_map(d / "utt2spk")
    utts, x = utterance_stats(d)
    missing = [u for u in utts if u not in utt2spk]
    if missing:
        raise DataError(f"{d / 'utt2spk'}: no speaker for utterance {missing[0]}")
    truth = [utt2spk[u] for u in utts]
    k = len(set(truth))
    pred = KMeans(k, n_init=10, random_state=seed).fit_predict(StandardScaler().fit_transform(x))
    out = clustering_scores(truth, pred)
    out.update(num_utts=len(utts), num_speakers=k)
    return out
