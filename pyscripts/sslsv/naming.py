"""The one owner of the recipe's names: the number of clusters C a run asks for, the name (tag) of a
pseudo-label set, and the names of the data dirs and networks made from it. run.sh, the study driver
and local/cluster_sweep.sh all ask here (``python3 -m sslsv.naming ...`` from the shell), so a name
never has two spellings; stages record what they were (method, C, seed in ``metrics.json``; the labels
and config of a network in ``system.json``) and the report reads those records, not the names.

    C        = max(2, round(multiplier x true speaker count))       (the papers' C = 1x, 2x, 4x)
    tag      = <method>[_<input norm>][_c<C>][_<source>][_r<round>][_s<seed>]
                                                          (kmeans_c48, kmeans_standard_c96_s1, cimc_c48_r2)
    labels   = <data>/<train set>_pl_<tag>                           (stage 7's data dir)
    network  = <tag>_<config stem>_<head>[_<mixup><alpha>][_s<seed>] (stage 8's dir under exp/<name>/embed)

``_c<C>`` is left out for a method that chooses the number of clusters itself (HDBSCAN), ``_<input
norm>`` is written only when it differs from the method config's own, and ``_s<seed>`` only for a seed
other than 0, so seed 0's results keep their plain names and are never touched by another seed's run.
``_<source>`` names vectors other than the i-vectors that round 1 clustered (``ssl``: the label-free
network's embeddings), and ``_r<round>`` a later round of iterative pseudo labels (round r clusters the
embeddings of round r - 1's network; round 1 has no suffix, so a one-round run keeps its plain name).
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from .tables import DataError, atomic_path

SUPERVISED = "supervised"   # the label source of a network trained on the true speakers
LABEL_FREE = "ssl"          # the label source of the contrastive network (each utterance its own instance)


def num_clusters(multiplier: float, num_speakers: int) -> int:
    """C for a multiple of the true speaker count (at least 2)."""
    return max(2, round(multiplier * num_speakers))


def seed_suffix(seed: int) -> str:
    """``""`` for seed 0, else ``_s<seed>``."""
    return "" if int(seed) == 0 else f"_s{int(seed)}"


def cluster_tag(method: str, n_clusters: int | None, input_norm: str = "", seed: int = 0, source: str = "",
                round_: int = 1) -> str:
    """The name of a pseudo-label set (see the module docstring)."""
    norm = f"_{input_norm}" if input_norm else ""
    c = "" if n_clusters is None else f"_c{int(n_clusters)}"
    return f"{method}{norm}{c}{_source_round(source, round_)}{seed_suffix(seed)}"


def _source_round(source: str, round_: int) -> str:
    """``[_<source>][_r<round>]`` of a pseudo-label set's tag."""
    if int(round_) < 1:
        raise ValueError(f"rounds count from 1, got {round_}")
    if source and not source.replace("-", "").replace(".", "").isalnum():
        raise ValueError(f"a vector source is a plain word (letters, digits, '-', '.'), got {source!r}")
    return (f"_{source}" if source else "") + ("" if int(round_) == 1 else f"_r{int(round_)}")


def pseudo_label_dir(data: str, train_set: str, tag: str) -> str:
    """Stage 7's data dir of the pseudo-label set ``tag``."""
    return f"{data}/{train_set}_pl_{tag}"


def network_tag(config: str | os.PathLike | None, cfg: Mapping[str, Any], seed: int = 0) -> str:
    """The part of a network's name its config gives: ``<config stem>_<head>[_<mixup><alpha>][_s<seed>]``
    (the network trained on the set ``tag`` is ``<tag>_<network tag>``). The contrastive head's variants
    are part of it (``ntxent_am0.1``, ``ntxent_aam0.2``, ``ntxent_m0_asym``), so that the rows of the
    NT-Xent-AM study (plain, additive, angular, symmetric or not) are different networks."""
    mix = cfg["mixup"]
    reg = "" if mix["kind"] == "none" else f"_{mix['kind']}{mix['alpha']:g}"
    stem = Path(config).stem if config else "defaults"
    return f"{stem}_{cfg['head']['name']}{_contrastive_variant(cfg['head'])}{reg}{seed_suffix(seed)}"


def _contrastive_variant(head: Mapping[str, Any]) -> str:
    """``_<am|aam><m>`` (``_m0`` without a margin) and ``_asym`` for a label-free head, else ``""``."""
    from .embed.heads import LABEL_FREE_HEADS, head_defaults

    if head["name"] not in LABEL_FREE_HEADS:
        return ""
    h = {**head_defaults(head["name"]), **head}
    margin = float(h["margin"])
    name = f"_{h['margin_type']}{margin:g}" if margin > 0 else "_m0"
    return name + ("" if h["symmetric"] else "_asym")


def labels_of(data_dir: str | os.PathLike) -> str:
    """The label source of a training data dir: the tag of the pseudo-label set stage 7 made it from
    (the clustering run's directory, recorded in ``pseudo_labels.json``), or :data:`SUPERVISED`."""
    rec = Path(data_dir) / "pseudo_labels.json"
    if not rec.is_file():
        return SUPERVISED
    return Path(json.loads(rec.read_text(encoding="utf-8"))["labels"]).parent.name


def write_system_record(out_dir: str | os.PathLike, data_dir: str | os.PathLike,
                        config: str | os.PathLike | None, cfg: Mapping[str, Any]) -> dict[str, Any]:
    """``<out_dir>/system.json``: what stage 8 trains there (label source, config name, head,
    regulariser), written before training so that the report names even an unfinished system."""
    mix = cfg["mixup"]
    rec = {"labels": labels_of(data_dir), "data": str(data_dir),
           "config": Path(config).stem if config else "defaults", "head": str(cfg["head"]["name"]),
           "mixup": str(mix["kind"]), "alpha": float(mix["alpha"])}
    Path(out_dir).mkdir(parents=True, exist_ok=True)
    with atomic_path(Path(out_dir) / "system.json") as tmp:
        Path(tmp).write_text(json.dumps(rec, indent=2) + "\n", encoding="utf-8")
    return rec


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python3 -m sslsv.naming", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("num-clusters", help="print C = max(2, round(multiplier x speakers))")
    p.add_argument("multiplier", type=float)
    p.add_argument("num_speakers", type=int)
    p = sub.add_parser("network-tag", help="print the name part a network takes from its config")
    p.add_argument("config")
    p.add_argument("overrides", nargs="?", default="", help="one string of section.key=value overrides")
    p.add_argument("--seed", type=int, default=0)
    p = sub.add_parser("cluster-tag", help="print the name of a pseudo-label set")
    g = p.add_mutually_exclusive_group(required=True)
    g.add_argument("--method")
    g.add_argument("--tag", help="a name chosen by the user (run.sh --cluster-tag): only the seed is added")
    p.add_argument("--num-clusters", type=int, default=None, help="leave out for a method that picks C")
    p.add_argument("--input-norm", default="", help="only when it differs from the method config's")
    p.add_argument("--source", default="", help="vectors other than i-vectors (--cluster-input ssl)")
    p.add_argument("--round", type=int, default=1, help="round of iterative pseudo labels (run.sh --rounds)")
    p.add_argument("--seed", type=int, default=0)
    a = ap.parse_args(argv)
    if a.cmd == "num-clusters":
        print(num_clusters(a.multiplier, a.num_speakers))
    elif a.cmd == "network-tag":
        from .embed.config import load_embed_config
        try:
            cfg = load_embed_config(a.config, shlex.split(a.overrides))
        except DataError as e:
            print(f"ERROR: {e}", file=sys.stderr)
            return 1
        print(network_tag(a.config, cfg, a.seed))
    elif a.cmd == "cluster-tag":
        try:
            if a.tag:
                print(f"{a.tag}{_source_round(a.source, a.round)}{seed_suffix(a.seed)}")
            else:
                print(cluster_tag(a.method, a.num_clusters, a.input_norm, a.seed, a.source, a.round))
        except ValueError as e:
            print(f"ERROR: {e}", file=sys.stderr)
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
