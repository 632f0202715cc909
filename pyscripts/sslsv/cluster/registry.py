"""The registry of clustering methods: every method is a scikit-learn-style estimator class registered
under a name, and every named configuration ``conf/cluster/<name>.yaml`` says which class it builds and
with which parameters. Adding a method is one module (a class decorated with :func:`register`) and one
config; the stage script does not change.

Config file layout (``conf/cluster/cimc.yaml``)::

    estimator: deep_im        # a registered class name
    input_norm: l2            # l2 | standard | none: how the vectors are normalised before fitting
    params:                   # constructor parameters of the class (unknown keys are errors)
      n_clusters: 100
      mixup_weight: 1.0
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from ..config import load_config, section
from ..tables import DataError

_ESTIMATORS: dict[str, type] = {}

# Modules whose import registers estimators (kept explicit so that a method list never depends on what
# happened to be imported first).
_MODULES = ("sslsv.cluster.classical", "sslsv.cluster.hdbscan_pipeline", "sslsv.cluster.dec",
            "sslsv.cluster.deep.estimator")

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


def _load_all() -> None:
    for m in _MODULES:
        importlib.import_module(m)


def estimators() -> dict[str, type]:
    """All registered estimator classes by name."""
    _load_all()
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


def build(config: str | os.PathLike, overrides: Iterable[str] = (),
          n_clusters: int | None = None) -> tuple[Any, dict[str, Any]]:
    """Build the estimator a config file describes. ``overrides`` are ``key=value`` strings for the
    ``params`` section (or ``input_norm=...``); ``n_clusters`` overrides the number of clusters of
    methods that take one. Returns the estimator and the resolved settings
    (``{"estimator", "input_norm", "params"}``) for logging."""
    cfg = resolved_config(config)
    if "estimator" not in cfg:
        raise DataError(f"{config}: no 'estimator:' (one of {', '.join(estimators())})")
    cls = estimator_class(str(cfg["estimator"]))
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
        if "n_clusters" not in params:
            raise DataError(f"{config}: estimator {cls.registry_name!r} finds the number of clusters "
                            "itself; it takes no --num-clusters")
        params["n_clusters"] = int(n_clusters)
    return cls(**params), {"estimator": cls.registry_name, "input_norm": input_norm, "params": params}
