#!/usr/bin/env python3
"""Simulate i-vector corpora of VoxCeleb2's shape from a Gaussian model fitted to real i-vectors
(sslsv.simulate): a vector-level test bed for the clustering stage (stage 6).

  simulate_ivectors.py fit [--aug-dir DIR] [--utt2uniq F] [--utt2sess F] <ivector-dir> <utt2spk> <model.npz>
      Fit mean, between-speaker B, within-speaker W (and per augmentation type the shift of the augmented
      copies, from stage 5's ivectors_<train>_aug) to the training i-vectors and their true speakers;
      save the model and print its summary.

  simulate_ivectors.py sample [options] <model.npz> <out-dir>
      Sample a corpus and write what stage 6 reads: ivector.scp + ivector.ark (--format npy:
      vectors.npy + vectors.keys), utt2spk, spk2utt, utt2sess, aug/ (the views, <utt>-<type>, with
      aug/utt2uniq) when the model has view statistics, and sim.json (parameters, seed, counts, model).
      Default shape: VoxCeleb2-dev (5,994 speakers x 182.2 utterances, 24.3 sessions per speaker);
      --scale F scales the number of speakers and keeps the per-speaker counts.

Then: pyscripts/cluster.py --method kmeans --num-clusters <speakers> --utt2spk <out>/utt2spk <out> <dir>
(--format npy: give <out>/vectors.npy; CAMSAT's views: --views <out>/aug [--utt2uniq <out>/aug/utt2uniq]).
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "pyscripts"))

import numpy as np  # noqa: E402
from sslsv.simulate import (  # noqa: E402
    VOX2,
    SimModel,
    check_sample_args,
    default_min_utts,
    fit_model,
    sample,
    summary,
    vox2_shape,
    write_corpus,
)
from sslsv.tables import DataError, read_map  # noqa: E402


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="verb", required=True)
    f = sub.add_parser("fit", help="fit a model to real i-vectors")
    f.add_argument("--aug-dir", help="i-vectors of the augmented copies (stage 5's ivectors_<train>_aug)")
    f.add_argument("--utt2uniq", help="augmented copy -> clean utterance (default: <utt>-<type> names)")
    f.add_argument("--utt2sess", help="utterance -> session (videos), for an unbiased B with sessions")
    f.add_argument("ivectors", help="i-vector dir (ivector.scp), scp, ark or .npy")
    f.add_argument("utt2spk")
    f.add_argument("model")
    s = sub.add_parser("sample", help="sample a corpus from a model")
    g = s.add_mutually_exclusive_group()
    g.add_argument("--num-speakers", type=int, help=f"speakers (default {VOX2['num_speakers']})")
    g.add_argument("--scale", type=float, help="VoxCeleb2's 5,994 speakers times this")
    s.add_argument("--utts-per-speaker", type=float, default=VOX2["utts_per_speaker"],
                   help="mean utterances per speaker (default %(default)s)")
    s.add_argument("--sessions-per-speaker", type=float, default=VOX2["sessions_per_speaker"],
                   help="mean sessions per speaker (default %(default)s)")
    s.add_argument("--session-share", type=float, default=0.5,
                   help="fraction of W shared by a session's utterances (default %(default)s)")
    s.add_argument("--tail", type=float, default=0.5,
                   help="lognormal sigma of the counts, 0: equal counts (default %(default)s)")
    s.add_argument("--min-utts", type=int, help="minimum utterances per speaker (default min(10, U))")
    s.add_argument("--min-sessions", type=int, default=1, help="minimum sessions per speaker")
    s.add_argument("--count-corr", type=float, default=0.7,
                   help="correlation of the log utterance and session counts (default %(default)s)")
    s.add_argument("--no-views", action="store_true", help="do not write aug/ even if the model has views")
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--format", choices=("ark", "npy"), default="ark")
    s.add_argument("model")
    s.add_argument("out_dir")
    return ap.parse_args(argv)


def do_fit(a: argparse.Namespace) -> int:
    from sslsv.cluster.inputs import read_vectors, read_views

    keys, x = read_vectors(a.ivectors)
    u2s = read_map(a.utt2spk)
    missing = [k for k in keys if k not in u2s]
    if missing:
        raise DataError(f"{a.utt2spk}: no speaker for {len(missing)} of the {len(keys)} vectors "
                        f"(e.g. {missing[0]!r})")
    spk = np.array([u2s[k] for k in keys])
    sess = None
    if a.utt2sess:
        u2x = read_map(a.utt2sess)
        if any(k not in u2x for k in keys):
            raise DataError(f"{a.utt2sess}: no session for some of the {len(keys)} vectors")
        sess = np.array([f"{u2s[k]} {u2x[k]}" for k in keys])
    views = types = present = None
    if a.aug_dir:
        types, views, present = read_views(keys, x, a.aug_dir, a.utt2uniq, how="none")
    m = fit_model(x, spk, views, types, present, sessions=sess, source=str(Path(a.ivectors).resolve()))
    m.save(a.model)
    r = summary(m)
    print(f"simulate_ivectors.py fit: {a.model}: dim {r['dim']}, N {r['num_utts']}, "
          f"{r['num_speakers']} speakers; tr B {r['trace_between']:.4g}, tr W {r['trace_within']:.4g}, "
          f"B/W {r['between_within_ratio']:.4f} ({r['between_negative_eigenvalues']} negative "
          f"eigenvalues of B, clipped when sampling: tr B+ {r['trace_between_sampled']:.4g})")
    for t, v in r["views"].items():
        print(f"  view {t}: {v['copies']} copies, |mean shift| {v['mean_shift_norm']:.4g}, "
              f"RMS shift {v['shift_rms']:.4g}")
    return 0


def do_sample(a: argparse.Namespace) -> int:
    shape = vox2_shape(a.scale) if a.scale is not None else dict(VOX2)
    if a.num_speakers is not None:
        shape["num_speakers"] = a.num_speakers
    min_utts = a.min_utts if a.min_utts is not None else default_min_utts(a.utts_per_speaker, a.min_sessions)
    check_sample_args(shape["num_speakers"], a.utts_per_speaker, a.sessions_per_speaker, a.session_share,
                      a.tail, min_utts, a.min_sessions, a.count_corr)
    if a.sessions_per_speaker < 2 and a.session_share > 0:
        print(f"simulate_ivectors.py: note: with {a.sessions_per_speaker:g} session per speaker the session "
              f"offsets (share {a.session_share:g} of W) act as extra between-speaker variance; use "
              "--session-share 0 to match a one-session corpus", file=sys.stderr)
    out = Path(a.out_dir)
    if out.exists() and not out.is_dir():
        raise DataError(f"{out}: exists and is not a directory")
    model = SimModel.load(a.model)
    t0 = time.time()
    corpus = sample(model, shape["num_speakers"], a.utts_per_speaker, a.sessions_per_speaker,
                    a.session_share, a.tail, a.seed, min_utts, a.min_sessions, a.count_corr,
                    views=not a.no_views)
    t1 = time.time()
    info = {"model": str(Path(a.model).resolve()), "scale": a.scale, "format": a.format}
    meta = write_corpus(corpus, out, a.format, info)
    c = meta["counts"]
    print(f"simulate_ivectors.py sample: {out}: {c['speakers']} speakers, {c['sessions']} sessions, "
          f"{c['utterances']} utterances (per speaker min {c['utts_per_speaker']['min']}, "
          f"median {c['utts_per_speaker']['median']:g}, max {c['utts_per_speaker']['max']}), dim {c['dim']}"
          f"{', views ' + ','.join(meta['view_types']) if meta['view_types'] else ''}; "
          f"sampled in {t1 - t0:.1f} s, written in {time.time() - t1:.1f} s")
    views = f" --views {out / meta['files']['views']}" if "views" in meta["files"] else ""
    print(f"stage 6: pyscripts/cluster.py --utt2spk {out / 'utt2spk'}{views} "
          f"{out / meta['files']['vectors']} <cluster-dir>")
    return 0


def main(argv: list[str] | None = None) -> int:
    a = parse_args(argv)
    try:
        return do_fit(a) if a.verb == "fit" else do_sample(a)
    except DataError as e:
        print(f"simulate_ivectors.py: error: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
