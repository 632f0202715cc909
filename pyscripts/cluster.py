#!/usr/bin/env python3
"""Cluster utterance vectors into pseudo speakers with a named method (the worker of steps/cluster.sh).

  cluster.py [options] <vectors> <out-dir>
  cluster.py --list                       named methods (conf/cluster/*.yaml) and estimator classes
  cluster.py --list-params <estimator>    parameters of an estimator class and their defaults

<vectors>: an i-vector dir (ivector.scp), an scp, a Kaldi ark or an .npy matrix. Writes to <out-dir>:
  labels          <utt> <cluster>   (cluster -1: left unassigned by the method, e.g. HDBSCAN noise)
  metrics.json    the eleven clustering metrics (supervised ones only with --utt2spk, which is read for
                  evaluation and nothing else), the resolved configuration, timings
  curve.tsv       per-epoch losses, clusters found and (with --utt2spk) the supervised metrics  [deep]
  final.pt        the trained network, for predicting other vectors                   [deep methods]
  config.yaml     the resolved configuration
"""
from __future__ import annotations

import argparse
import inspect
import json
import logging
import os
import sys
import time
from pathlib import Path

import numpy as np
import yaml
from sslsv.cluster import build, estimator_class, estimators, method_config, methods
from sslsv.cluster.inputs import normalize, read_vectors, read_views
from sslsv.logs import setup
from sslsv.provenance import provenance
from sslsv.tables import DataError, atomic_path, read_map, write_lines

log = logging.getLogger("cluster.py")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--method", default="kmeans", help="named method: conf/cluster/<method>.yaml")
    p.add_argument("--config", help="config file to use instead of conf/cluster/<method>.yaml")
    p.add_argument("--conf-dir", default=None, help="directory of named method configs")
    p.add_argument("--num-clusters", type=int, help="number of clusters (methods that take one)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a parameter of the config (repeatable); input_norm=l2|standard|none too")
    p.add_argument("--views", help="augmented vectors (stage 5's ivectors_<train>_aug) for CAMSAT's views")
    p.add_argument("--utt2uniq", help="augmented utterance -> clean utterance (default: <utt>-<type> names)")
    p.add_argument("--utt2spk", help="true speakers, for the evaluation metrics only")
    p.add_argument("--device", help="auto | cpu | cuda | cuda:N (torch methods)")
    p.add_argument("--seed", type=int, help="random_state of the method")
    p.add_argument("--silhouette-sample", type=int, default=10000, help="points sampled for silhouette")
    p.add_argument("--list", action="store_true", help="list methods and estimators, then exit")
    p.add_argument("--list-params", metavar="ESTIMATOR", help="list an estimator's parameters, then exit")
    p.add_argument("vectors", nargs="?")
    p.add_argument("out_dir", nargs="?")
    a = p.parse_args(argv)
    if not (a.list or a.list_params) and not (a.vectors and a.out_dir):
        p.error("give <vectors> <out-dir>")
    return a


def write_json(path: Path, obj: dict) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=2, default=_plain) + "\n")


def _plain(o: object) -> object:
    if isinstance(o, np.generic):
        return o.item()
    raise TypeError(f"not JSON serialisable: {type(o)}")


def write_curve(path: Path, curve: list[dict]) -> None:
    cols: list[str] = []
    for row in curve:
        cols += [k for k in row if k not in cols]
    def fmt(v):
        return ("" if v is None else (f"{v:.6g}" if isinstance(v, float) else str(v)))
    write_lines(path, ["\t".join(cols), *("\t".join(fmt(r.get(c)) for c in cols) for r in curve)])


def main(argv: list[str] | None = None) -> int:
    setup("cluster.py")
    a = parse_args(argv)
    conf_dir = a.conf_dir or os.environ.get("SSLSV_CLUSTER_CONF")
    kw = {"conf_dir": conf_dir} if conf_dir else {}
    if a.list:
        print("methods (conf/cluster):", " ".join(methods(**kw)))
        print("estimators:", " ".join(estimators()))
        return 0
    if a.list_params:
        for k, v in estimator_class(a.list_params)().get_params(deep=False).items():
            print(f"{k}: {v!r}")
        return 0

    out = Path(a.out_dir)
    config = method_config(a.method, config=a.config, **kw)
    overrides = list(a.set)
    est, settings = build(config, overrides, n_clusters=a.num_clusters)
    params = est.get_params(deep=False)
    extra = {}
    if a.seed is not None and "random_state" in params:
        extra["random_state"] = a.seed
    if a.device is not None and "device" in params:
        extra["device"] = a.device
    if "checkpoint_dir" in params:
        extra["checkpoint_dir"] = str(out / "ckpt")
    est.set_params(**extra)
    settings["params"] = est.get_params(deep=False)
    fit_args = inspect.signature(est.fit).parameters

    # Everything is read and checked before the long work starts.
    keys, raw = read_vectors(a.vectors)
    truth = None
    if a.utt2spk:
        u2s = read_map(a.utt2spk)
        missing = [k for k in keys if k not in u2s]
        if missing:
            raise DataError(f"{a.utt2spk}: no speaker for {len(missing)} of the {len(keys)} vectors "
                            f"(e.g. {missing[0]!r})")
        truth = np.array([u2s[k] for k in keys])
    n_req = settings["params"].get("n_clusters")
    if n_req is not None and not (isinstance(n_req, int) and 2 <= n_req <= len(keys)):
        raise DataError(f"{a.vectors}: the number of clusters must be an integer from 2 to the number of "
                        f"vectors ({len(keys)}), got {n_req!r}")
    if "device" in params:
        from sslsv.device import resolve_device

        resolve_device(str(settings["params"]["device"]))   # a missing CUDA fails here, before any work
    x = normalize(raw, settings["input_norm"])
    kwargs: dict = {}
    if a.views and "views" in fit_args:
        types, views, present = read_views(keys, raw, a.views, a.utt2uniq, settings["input_norm"])
        kwargs["views"] = views
        log.info(f"views from {a.views}: {', '.join(types)} ({present.mean():.1%} of utterances present)")
    if truth is not None and "eval_labels" in fit_args:
        kwargs["eval_labels"] = truth
    out.mkdir(parents=True, exist_ok=True)
    with atomic_path(out / "config.yaml") as tmp:
        tmp.write_text(yaml.safe_dump({"method": a.method, "config": str(config), **settings},
                                      sort_keys=False))
    log.info(f"{a.method} ({settings['estimator']}) on {len(keys)} vectors of dim {x.shape[1]} "
        f"({settings['input_norm']} inputs){f', {n_req} clusters' if n_req else ''}")

    t0 = time.time()
    est.fit(x, **kwargs)
    fit_seconds = time.time() - t0
    labels = np.asarray(est.labels_, dtype=np.int64)
    write_lines(out / "labels", (f"{k} {c}" for k, c in zip(keys, labels, strict=True)))
    if getattr(est, "curve_", None):
        write_curve(out / "curve.tsv", est.curve_)
    if hasattr(est, "model_"):
        import torch

        with atomic_path(out / "final.pt") as tmp:
            torch.save({"model": est.model_.state_dict(), "params": settings["params"],
                        "input_norm": settings["input_norm"], "in_dim": x.shape[1]}, tmp)

    from sslsv.cluster.metrics import GEOMETRIC, METRICS, SUPERVISED, clustering_metrics, format_metrics

    # Unassigned points (-1) count as singleton clusters in the label-based metrics (no credit for
    # leaving them out); the geometric ones (silhouette, CHS, DBS) are computed on the assigned points.
    noise = labels < 0
    scored = labels.copy()
    scored[noise] = labels.max() + 1 + np.arange(noise.sum())
    t1 = time.time()
    seed = settings["params"].get("random_state", 0) or 0
    metrics = clustering_metrics(scored, truth, None, names=[m for m in METRICS if m not in GEOMETRIC
                                                              and (truth is not None or m not in SUPERVISED)])
    geo = clustering_metrics(labels[~noise], None, x[~noise], silhouette_sample=a.silhouette_sample,
                             random_state=seed, names=list(GEOMETRIC)) if (~noise).sum() > 1 else {}
    metrics = {m: (geo if m in GEOMETRIC else metrics).get(m) for m in METRICS
               if m in metrics or m in geo}
    result = {"method": a.method, "estimator": settings["estimator"],
              "seed": settings["params"].get("random_state"), "vectors": a.vectors,
              "num_vectors": len(keys), "dim": int(x.shape[1]), "input_norm": settings["input_norm"],
              "n_clusters_requested": n_req, "num_clusters_found": int(np.unique(labels[~noise]).size),
              "num_unassigned": int(noise.sum()),
              "metrics": metrics, "eval_labels": a.utt2spk, "views": a.views,
              "views_used": getattr(est, "views_used_", None),
              **({"training": est.training_summary()} if hasattr(est, "training_summary") else {}),
              "fit_seconds": round(fit_seconds, 2), "metrics_seconds": round(time.time() - t1, 2),
              **provenance()}
    write_json(out / "metrics.json", result)
    log.info(f"wrote {out}/labels ({result['num_clusters_found']} clusters"
        f"{f', {int(noise.sum())} unassigned' if noise.any() else ''}) in {fit_seconds:.1f} s")
    print(f"{a.method}: {format_metrics(metrics)}")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except DataError as e:
        print(f"cluster.py: ERROR: {e}", file=sys.stderr)
        sys.exit(1)
