#!/usr/bin/env python3
"""Score verification trials on utterance-level vectors (i-vectors or embeddings) and report EER/minDCF.

Sub-commands (the workers of steps/score_cosine.sh, steps/score_plda.sh and steps/score_trials.sh):
  cosine   [--mean-scp train.scp] <trials> <test.scp> <out-dir>
           cosine after subtracting the training mean (no labels used).
  plda     [--lda-dim N] [--plda-iters N] [--smoothing B] [--label S]
           <train.scp> <train-utt2spk> <trials> <test.scp> <out-dir>
           Kaldi's voxceleb back end: mean.vec, LDA (transform.mat), length norm, PLDA (plda), trained
           on the training vectors with the given utt2spk; trials scored with ivector-plda-scoring.
  embedding --train-scp train.scp [--utt2spk utt2spk] [--top-n 300] [--label S]
           <trials> <test.scp> <out-dir>
           network embeddings (docs/network.md §6.4-6.5, the worker of steps/score_trials.sh): μ = mean of
           the raw training embeddings (saved as mean_vec.npy); cosine of the μ-subtracted vectors ->
           <out-dir>/cosine/; AS-norm (top-N cohort cosines of each side, N capped at the cohort size;
           N >= cohort size is S-norm) -> <out-dir>/asnorm/. The cohort is the speaker means of the
           training embeddings under --utt2spk (the (pseudo-)labels of the training data), or, without
           --utt2spk, the training utterance vectors themselves (cost grows with their number). Both
           μ-subtracted and length-normalised. <out-dir>/result.json = {"cosine": {...}, "asnorm": {...},
           "label", "top_n", "cohort": {"size", "kind"}, ...}.
  evaluate [--result result.json] [--label S] <trials> <scores>
           EER and minDCF of an existing scores file.

Each writes <out-dir>/scores (``enroll test score``) and <out-dir>/result.json (atomically; embedding:
in <out-dir>/cosine and <out-dir>/asnorm) and prints the one-line summary (embedding: two). Inputs are
checked before any computation: every trial's utterances must be in test.scp, every training utterance
must have a speaker in utt2spk.
"""
from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path

import numpy as np
from sslsv.backend import (
    BACKEND_DEFAULTS,
    Lda,
    Plda,
    dot_scores,
    global_mean,
    length_norm,
    score_pairs,
    write_kaldi_vector,
)
from sslsv.logs import setup
from sslsv.provenance import provenance
from sslsv.score_norm import adaptive_snorm, center_normalize, speaker_means
from sslsv.scoring import (
    Trials,
    check_trials_keys,
    evaluate,
    format_score,
    read_scores,
    read_trials,
    summary_line,
    write_result,
    write_scores,
)
from sslsv.tables import DataError, atomic_path, read_map, read_vector_scp

log = logging.getLogger("score_trials.py")


def _index(trials: Trials, keys: list[str]) -> tuple[np.ndarray, np.ndarray]:
    pos = {k: i for i, k in enumerate(keys)}
    e = np.fromiter((pos[t[0]] for t in trials), dtype=np.int64, count=len(trials))
    t = np.fromiter((pos[t[1]] for t in trials), dtype=np.int64, count=len(trials))
    return e, t


def _finish(out_dir: Path, trials: Trials, scores: np.ndarray, info: dict, label: str) -> dict:
    write_scores(out_dir / "scores", trials, scores)
    # Metrics on the scores as written (6 significant digits), as Kaldi computes them from the file.
    rounded = np.array([float(format_score(s)) for s in scores.tolist()])
    result = evaluate(trials, {(t[0], t[1]): s for t, s in zip(trials, rounded.tolist(), strict=True)})
    result = {"label": label, **info, **result, **provenance()}
    write_result(out_dir / "result.json", result)
    print(summary_line(result, label), flush=True)
    return result


def _load_test(trials_path: str, test_scp: str) -> tuple[Trials, list[str], np.ndarray]:
    trials = read_trials(trials_path)
    keys, x = read_vector_scp(test_scp)
    check_trials_keys(trials, set(keys), what=test_scp)
    return trials, keys, x


def cmd_cosine(a: argparse.Namespace) -> dict:
    trials, keys, x = _load_test(a.trials, a.test_scp)
    mean = None
    if a.mean_scp:
        _, xtr = read_vector_scp(a.mean_scp)
        if xtr.shape[1] != x.shape[1]:
            raise DataError(f"{a.mean_scp}: dimension {xtr.shape[1]}, but {a.test_scp} has {x.shape[1]}")
        mean = global_mean(xtr)
        log.info(f"mean of {len(xtr)} training vectors from {a.mean_scp}")
    t0 = time.time()
    xn = length_norm(x - mean if mean is not None else x, scaleup=False)
    e, t = _index(trials, keys)
    scores = score_pairs(xn, e, t, dot_scores)
    log.info(f"scored {len(trials)} trials (cosine) in {time.time() - t0:.2f} s")
    info = {"backend": "cosine", "mean_scp": a.mean_scp, "trials": a.trials, "test_scp": a.test_scp,
            "dim": int(x.shape[1])}
    return _finish(Path(a.out_dir), trials, scores, info, a.label)


def cmd_plda(a: argparse.Namespace) -> dict:
    out = Path(a.out_dir)
    # --- inputs checked first
    utt2spk = read_map(a.utt2spk)
    trials, keys, x = _load_test(a.trials, a.test_scp)
    tkeys, xtr = read_vector_scp(a.train_scp)
    for i, k in enumerate(tkeys):
        if k not in utt2spk:
            raise DataError(f"{a.train_scp}:{i + 1}: utterance {k!r} has no speaker in {a.utt2spk}")
    if xtr.shape[1] != x.shape[1]:
        raise DataError(f"{a.train_scp}: dimension {xtr.shape[1]}, but {a.test_scp} has {x.shape[1]}")
    spk = np.array([utt2spk[k] for k in tkeys])
    n_spk = len(set(spk.tolist()))
    dim = xtr.shape[1]
    log.info(f"{len(tkeys)} training vectors of dimension {dim}, {n_spk} speakers ({a.utt2spk}); "
        f"{len(trials)} trials on {len(keys)} test vectors")

    # --- mean, LDA, length norm
    mean = global_mean(xtr)
    write_kaldi_vector(out / "mean.vec", mean)
    xtr = xtr - mean
    lda_dim = a.lda_dim
    if lda_dim > 0:
        cap = min(dim, n_spk - 1)
        if lda_dim > cap:
            log.info(f"NOTICE: LDA dimension {lda_dim} clamped to {cap} "
                f"= min(dim {dim}, #speakers - 1 = {n_spk - 1})")
            lda_dim = cap
        lda = Lda().fit(xtr, spk, lda_dim)
        lda.write_kaldi(out / "transform.mat")
        xtr = lda.transform(xtr)
        log.info(f"LDA {dim} -> {lda_dim} dims (between-class eigenvalues "
            f"{', '.join(f'{v:.3g}' for v in lda.eigenvalues[:5])}, ...)")
    else:
        lda = None
        (out / "transform.mat").unlink(missing_ok=True)
        log.info("no LDA (--lda-dim 0)")
    xtr = length_norm(xtr)

    # --- PLDA
    plda = Plda().fit(xtr, spk, num_iters=a.plda_iters)
    plda.smooth(a.smoothing)
    plda.save(out / "plda")
    plda.write_kaldi_text(out / "plda.txt")  # the same model as Kaldi's text <Plda> object
    log.info(f"PLDA psi (largest): {', '.join(f'{v:.3g}' for v in plda.psi[:5])}")

    # --- scoring (enrollment and test are both single test utterances: num_utts = 1)
    t0 = time.time()
    xt = x - mean
    if lda is not None:
        xt = lda.transform(xt)
    yt = plda.transform(length_norm(xt), num_utts=1)
    e, t = _index(trials, keys)
    scores = score_pairs(yt, e, t, plda.llr)
    log.info(f"scored {len(trials)} trials (PLDA) in {time.time() - t0:.2f} s")
    info = {"backend": "lda+plda" if lda is not None else "plda",
            "options": {"lda_dim_requested": a.lda_dim, "lda_dim": lda_dim, "plda_iters": a.plda_iters,
                        "smoothing": a.smoothing, "normalize_length": True, "num_utts": 1},
            "utt2spk": a.utt2spk, "train_scp": a.train_scp, "num_train_utts": len(tkeys),
            "num_train_spk": n_spk, "trials": a.trials, "test_scp": a.test_scp, "dim": dim,
            "plda_objective": plda.objective}
    return _finish(out, trials, scores, info, a.label)


def cmd_embedding(a: argparse.Namespace) -> dict:
    out = Path(a.out_dir)
    # --- inputs checked first
    utt2spk = read_map(a.utt2spk) if a.utt2spk else None
    trials, keys, x = _load_test(a.trials, a.test_scp)
    tkeys, xtr = read_vector_scp(a.train_scp)
    if utt2spk is not None:
        # A pseudo-label dir may have dropped utterances (small clusters): those still count for the mean
        # but not for the cohort; an utt2spk utterance without an embedding is an error.
        known = set(tkeys)
        for i, k in enumerate(utt2spk):
            if k not in known:
                raise DataError(f"{a.utt2spk}:{i + 1}: utterance {k!r} has no embedding in {a.train_scp}")
    if xtr.shape[1] != x.shape[1]:
        raise DataError(f"{a.train_scp}: dimension {xtr.shape[1]}, but {a.test_scp} has {x.shape[1]}")
    if a.top_n < 2:
        raise ValueError(f"--top-n must be at least 2, got {a.top_n}")

    # --- mean, cohort
    mean = global_mean(xtr)
    with atomic_path(out / "mean_vec.npy") as tmp, open(tmp, "wb") as f:
        np.save(f, mean)
    if utt2spk is not None:
        rows = [i for i, k in enumerate(tkeys) if k in utt2spk]
        _, cohort = speaker_means([tkeys[i] for i in rows], xtr[rows], utt2spk)
        kind = "speaker_means"
        log.info(f"cohort: {len(cohort)} speaker means of {len(rows)} training embeddings ({a.utt2spk})")
    else:
        cohort = xtr
        kind = "utterances"
        log.info(f"cohort: the {len(tkeys)} training utterance embeddings (no --utt2spk)")
    if len(cohort) < 2:
        raise DataError(f"{a.train_scp}: AS-norm needs a cohort of at least 2 vectors, got {len(cohort)}")
    cohort = center_normalize(cohort, mean)
    top_n = a.top_n
    if top_n > len(cohort):
        log.info(f"NOTICE: --top-n {a.top_n} capped at the cohort size {len(cohort)} (this is S-norm)")
        top_n = len(cohort)

    # --- scoring: the test vectors serve as both sides, so the cohort statistics are computed once each
    t0 = time.time()
    xn = center_normalize(x, mean)
    e, t = _index(trials, keys)
    raw, normed = adaptive_snorm(xn, xn, e, t, cohort, top_n)
    log.info(f"scored {len(trials)} trials (cosine and AS-norm, top {top_n} of {len(cohort)}) "
        f"in {time.time() - t0:.2f} s")
    common = {"train_scp": a.train_scp, "utt2spk": a.utt2spk, "trials": a.trials, "test_scp": a.test_scp,
              "dim": int(x.shape[1]), "num_train_utts": len(tkeys)}
    cohort_info = {"size": len(cohort), "kind": kind}
    res_cos = _finish(out / "cosine", trials, raw, {"backend": "cosine", "mean": "train", **common},
                      f"{a.label} cosine")
    res_as = _finish(out / "asnorm", trials, normed,
                     {"backend": "asnorm", "top_n": top_n, "cohort": cohort_info, **common},
                     f"{a.label} AS-norm (top {top_n})")
    result = {"label": a.label, "top_n": top_n, "top_n_requested": a.top_n, "cohort": cohort_info,
              **common, "cosine": res_cos, "asnorm": res_as, **provenance()}
    write_result(out / "result.json", result)
    return result


def cmd_evaluate(a: argparse.Namespace) -> dict:
    trials = read_trials(a.trials)
    scores = read_scores(a.scores)
    known = {(t[0], t[1]) for t in trials}
    for k in scores:
        if k not in known:
            raise DataError(f"{a.scores}: score for {k[0]} {k[1]}, which is not a trial in {a.trials}")
    result = {"label": a.label, "trials": a.trials, "scores": a.scores, **evaluate(trials, scores)}
    if a.result:
        write_result(a.result, result)
    print(summary_line(result, a.label), flush=True)
    return result


def main(argv: list[str] | None = None) -> int:
    setup("score_trials.py")
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    c = sub.add_parser("cosine", help="cosine scoring after mean subtraction")
    c.add_argument("--mean-scp", help="vectors whose mean is subtracted (the training set)")
    c.add_argument("--label", default="cosine")
    c.add_argument("trials")
    c.add_argument("test_scp")
    c.add_argument("out_dir")
    p = sub.add_parser("plda", help="mean + LDA + length norm + PLDA, trained and scored")
    p.add_argument("--lda-dim", type=int, default=BACKEND_DEFAULTS["lda_dim"], help="0 = no LDA")
    p.add_argument("--plda-iters", type=int, default=BACKEND_DEFAULTS["plda_iters"])
    p.add_argument("--smoothing", type=float, default=BACKEND_DEFAULTS["smoothing"])
    p.add_argument("--label", default="supervised back end")
    for name in ("train_scp", "utt2spk", "trials", "test_scp", "out_dir"):
        p.add_argument(name)
    m = sub.add_parser("embedding", help="embeddings: mean-subtracted cosine and AS-norm")
    m.add_argument("--train-scp", required=True, help="training embeddings: the mean and the cohort")
    m.add_argument("--utt2spk", help="(pseudo-)speakers of the training embeddings: cohort of speaker "
                   "means [none: the training utterance vectors]")
    m.add_argument("--top-n", type=int, default=300, help="cohort cosines kept per vector")
    m.add_argument("--label", default="embedding")
    m.add_argument("trials")
    m.add_argument("test_scp")
    m.add_argument("out_dir")
    v = sub.add_parser("evaluate", help="EER / minDCF of a scores file")
    v.add_argument("--result", help="write result.json here")
    v.add_argument("--label", default=None)
    v.add_argument("trials")
    v.add_argument("scores")
    a = ap.parse_args(argv)
    try:
        if a.cmd != "evaluate":
            Path(a.out_dir).mkdir(parents=True, exist_ok=True)
        {"cosine": cmd_cosine, "plda": cmd_plda, "embedding": cmd_embedding,
         "evaluate": cmd_evaluate}[a.cmd](a)
    except (DataError, ValueError, np.linalg.LinAlgError) as e:
        print(f"score_trials.py: ERROR: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
