"""The registry of clustering methods: every method is a scikit-learn-style estimator class registered
under a name, and every named configuration ``conf/cluster/<name>.yaml`` says which class it builds and
with which parameters. Adding a method is one module anywhere in the ``sslsv.cluster`` package (a class
decorated with :func:`register`; every module of the package and its subpackages is imported to find
them) and one config; no list, stage script or sweep changes. A method takes a number of clusters
(``--num-clusters``) when its class has an ``n_clusters`` parameter (:func:`takes_n_clusters`); one that
has none finds the number itself.

Modules of the package must keep optional heavy dependencies (faiss, hdbscan, kaldiio) out of their
top-level imports, since finding the estimators imports every module.

Command line (for shell scripts)::

    python3 -m sslsv.cluster methods [--conf-dir D]          # the named methods, one a line
    python3 -m sslsv.cluster estimators                      # the registered estimator names
    python3 -m sslsv.cluster takes-c [--conf-dir D] METHOD... # "<method> yes|no" a line

Config file layout (``conf/cluster/cimc.yaml``)::

    estimator: deep_im        # a registered class name
    input_norm: l2            # l2 | standard | none: how the vectors are normalised before fitting
    params:                   # constructor parameters of the class (unknown keys are errors)
      n_clusters: 100
      mixup_weight: 1.0
"""

from __future__ import annotations

import argparse
import functools
import importlib
import inspect
import os
import pkgutil
import sys
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from ..config import load_config, section
from ..tables import DataError

_ESTIMATORS: dict[str, type] = {}

CONF_DIR = Path(__file__).resolve().parents[3] / "conf" / "cluster"
INPUT_NORMS = ("l2", "standard", "none")


def register(name: str) -> Callable[[type], type]:
    """Class decorator: make an estimator class available under ``name``."""
    def deco(cls: type) -> type:
        if name in _ESTIMATORS and _ESTIMATORS[name] is not cls:
            raise ValueError(f"clustering estimator {name!r} registered twice")
        _ESTIMATORS[name] = cls
        cls.registry_name = name
        return cls
    return deco


def package_modules() -> list[str]:
    """Every module of the ``sslsv.cluster`` package and its subpackages (``__main__`` aside), sorted by
    name. Walking the package imports its subpackages (``__init__``) only."""
    pkg = importlib.import_module(__name__.rpartition(".")[0])
    return sorted(m.name for m in pkgutil.walk_packages(pkg.__path__, f"{pkg.__name__}.")
                  if m.name.rpartition(".")[2] != "__main__")


@functools.cache
def _discover() -> None:
    """Import every module of the package once, in name order: each ``@register`` runs on import, so what
    is registered never depends on what happened to be imported first. An error of a module propagates."""
    for name in package_modules():
        importlib.import_module(name)


def estimators() -> dict[str, type]:
    """All registered estimator classes by name."""
    _discover()
    return dict(sorted(_ESTIMATORS.items()))


def estimator_class(name: str) -> type:
    """The class registered as ``name``; the error lists the known names."""
    est = estimators()
    if name not in est:
        raise DataError(f"unknown clustering estimator {name!r} (known: {', '.join(est)})")
    return est[name]


def methods(conf_dir: str | os.PathLike = CONF_DIR) -> list[str]:
    """Named method configurations available under ``conf_dir`` (``<name>.yaml``)."""
    return sorted(p.stem for p in Path(conf_dir).glob("*.yaml"))


def method_config(method: str, conf_dir: str | os.PathLike = CONF_DIR,
                  config: str | os.PathLike | None = None) -> Path:
    """Path of the config of ``method``: ``config`` when given, else ``<conf_dir>/<method>.yaml``."""
    p = Path(config) if config else Path(conf_dir) / f"{method}.yaml"
    if not p.is_file():
        raise DataError(f"{p}: no config for clustering method {method!r} "
                        f"(available: {', '.join(methods(conf_dir))})")
    return p


def estimator_takes_n_clusters(cls: type) -> bool:
    """Whether an estimator class takes a number of clusters: whether ``n_clusters`` is a parameter of its
    constructor (HDBSCAN's pipeline has none: it finds the number itself)."""
    return "n_clusters" in inspect.signature(cls.__init__).parameters


def takes_n_clusters(method: str, conf_dir: str | os.PathLike = CONF_DIR,
                     config: str | os.PathLike | None = None) -> bool:
    """Whether the named method (its config's estimator class) takes a number of clusters: the one answer
    that :func:`build`, study grids (:mod:`sslsv.study`) and ``local/cluster_sweep.sh`` go by."""
    path = method_config(method, conf_dir, config)
    return estimator_takes_n_clusters(_config_class(path, resolved_config(path)))


TOP_KEYS = ("base", "estimator", "input_norm", "params", "description")


def resolved_config(config: str | os.PathLike, _seen: tuple[Path, ...] = ()) -> dict[str, Any]:
    """A method config with its ``base:`` files merged in: ``base`` names other config files (relative to
    this one's folder), read first and in order; this file's top-level keys win, and its ``params`` update
    theirs key by key. So ``cimc_paper.yaml`` is ``base: [cimc.yaml, schedule/paper.yaml]``."""
    path = Path(config).resolve()
    if path in _seen:
        raise DataError(f"{config}: 'base' includes itself ({' -> '.join(map(str, (*_seen, path)))})")
    cfg = load_config(path)
    unknown = set(cfg) - set(TOP_KEYS)
    if unknown:
        raise DataError(f"{config}: unknown top-level key(s) {sorted(unknown)} "
                        f"(known: {', '.join(TOP_KEYS)})")
    bases = cfg.pop("base", []) or []
    if isinstance(bases, str):
        bases = [bases]
    merged: dict[str, Any] = {}
    for b in bases:
        bp = path.parent / str(b)
        if not bp.is_file():
            raise DataError(f"{config}: base file {b!r} not found (looked for {bp})")
        sub = resolved_config(bp, (*_seen, path))
        params = {**merged.get("params", {}), **(sub.pop("params", None) or {})}
        merged.update(sub)
        merged["params"] = params
    params = {**merged.get("params", {}), **(cfg.pop("params", None) or {})}
    merged.update(cfg)
    if params:
        merged["params"] = params
    return merged


def _config_class(config: str | os.PathLike, cfg: dict[str, Any]) -> type:
    """The estimator class a resolved config names."""
    if "estimator" not in cfg:
        raise DataError(f"{config}: no 'estimator:' (one of {', '.join(estimators())})")
    return estimator_class(str(cfg["estimator"]))


def build(config: str | os.PathLike, overrides: Iterable[str] = (),
          n_clusters: int | None = None) -> tuple[Any, dict[str, Any]]:
    """Build the estimator a config file describes. ``overrides`` are ``key=value`` strings for the
    ``params`` section (or ``input_norm=...``); ``n_clusters`` overrides the number of clusters of
    methods that take one. Returns the estimator and the resolved settings
    (``{"estimator", "input_norm", "params"}``) for logging."""
    cfg = resolved_config(config)
    cls = _config_class(config, cfg)
    overrides = list(overrides)
    input_norm = str(cfg.get("input_norm", "l2"))
    rest = []
    for o in overrides:
        k = o.split("=", 1)[0].replace("-", "_")
        if k == "input_norm":
            input_norm = o.split("=", 1)[1] if "=" in o else ""
        else:
            rest.append(o)
    if input_norm not in INPUT_NORMS:
        raise DataError(f"{config}: input_norm {input_norm!r} is not one of {', '.join(INPUT_NORMS)}")
    params = section(config, "params", cls().get_params(deep=False), rest, config=cfg)
    if n_clusters is not None:
        if not estimator_takes_n_clusters(cls):
            raise DataError(f"{config}: estimator {cls.registry_name!r} finds the number of clusters "
                            "itself; it takes no --num-clusters")
        params["n_clusters"] = int(n_clusters)
    return cls(**params), {"estimator": cls.registry_name, "input_norm": input_norm, "params": params}


def main(argv: list[str] | None = None) -> int:
    """The command line of the module docstring (``python3 -m sslsv.cluster``)."""
    p = argparse.ArgumentParser(prog="python3 -m sslsv.cluster",
                                description="The clustering methods and estimators of the registry.")
    sub = p.add_subparsers(dest="command", required=True)
    sub.add_parser("methods", help="named methods (<conf-dir>/*.yaml), one a line").add_argument(
        "--conf-dir", default=CONF_DIR)
    sub.add_parser("estimators", help="registered estimator names, one a line")
    tc = sub.add_parser("takes-c", help="'<method> yes' or '<method> no' a line: whether the method takes "
                        "a number of clusters (its estimator has an n_clusters parameter)")
    tc.add_argument("--conf-dir", default=CONF_DIR)
    tc.add_argument("method", nargs="+")
    a = p.parse_args(argv)
    try:
        if a.command == "methods":
            lines = methods(a.conf_dir)
        elif a.command == "estimators":
            lines = list(estimators())
        else:
            lines = [f"{m} {'yes' if takes_n_clusters(m, a.conf_dir) else 'no'}" for m in a.method]
    except DataError as e:
        print(f"{p.prog}: ERROR: {e}", file=sys.stderr)
        return 1
    print("\n".join(lines))
    return 0
