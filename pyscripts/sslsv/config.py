"""YAML configuration of the model stages (``conf/ivector.yaml``, ``conf/cluster/*.yaml``, ...).

A config file is a mapping of sections; a step reads its section, and ``name=value`` overrides from the
command line win over the file. Unknown keys are errors that name the file and the key, so a typo never
silently falls back to a default.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import yaml

from .tables import DataError


def load_config(path: str | os.PathLike) -> dict[str, Any]:
    """Read a YAML config file (a mapping at top level)."""
    p = Path(path)
    if not p.is_file():
        raise DataError(f"{p}: no such config file")
    try:
        data = yaml.safe_load(p.read_text()) or {}
    except yaml.YAMLError as e:
        raise DataError(f"{p}: not valid YAML: {e}") from e
    if not isinstance(data, dict):
        raise DataError(f"{p}: expected a mapping at top level")
    return data


def section(path: str | os.PathLike | None, name: str, defaults: Mapping[str, Any],
            overrides: Iterable[str] = (), config: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Options of section ``name``: ``defaults`` updated by the file's section, then by ``key=value``
    overrides (values parsed as YAML scalars). Keys not in ``defaults`` are errors. ``config``: the
    file's contents when the caller has already read (and resolved) them; ``path`` then names it in
    errors."""
    out = dict(defaults)
    where = f"{path}" if path is not None else "defaults"
    items: list[tuple[str, Any, str]] = []
    if path is not None or config is not None:
        sec = (load_config(path) if config is None else config).get(name, {}) or {}
        if not isinstance(sec, dict):
            raise DataError(f"{path}: section '{name}' must be a mapping")
        items += [(k, v, f"{where}: {name}.{k}") for k, v in sec.items()]
    for o in overrides:
        if "=" not in o:
            raise DataError(f"override {o!r}: expected key=value")
        k, v = o.split("=", 1)
        items.append((k.replace("-", "_"), yaml.safe_load(v), f"override {o!r}"))
    for k, v, src in items:
        if k not in out:
            raise DataError(f"{src}: unknown option '{k}' (known: {', '.join(sorted(out))})")
        out[k] = typed(v, defaults[k], src)
    return out


def typed(value: Any, default: Any, where: str) -> Any:
    """``value`` converted to the type of a numeric ``default``: YAML 1.1 reads ``1e-4`` (no dot) as a
    string and ``3`` as an int, so a float option given as ``1e-4`` or an int option given as ``3e3``
    would otherwise reach the code with the wrong type. Booleans, strings and options whose default is
    None or another type, and the word ``auto`` (options that derive their value), are returned as YAML
    read them; a value that is not a number of the expected kind, or not true / false for a boolean
    option, is an error naming ``where``."""
    if isinstance(default, bool) and not isinstance(value, bool):
        raise DataError(f"{where}: expected true or false (like the default {str(default).lower()}), "
                        f"got {value!r}")
    if (isinstance(default, bool) or not isinstance(default, (int, float)) or isinstance(value, bool)
            or value == "auto"):
        return value
    if isinstance(value, (int, float, str)):
        try:
            f = float(value)
        except ValueError:
            f = None
        if f is not None:
            if isinstance(default, float):
                return f
            if f == int(f):
                return int(f)
    kind = "a float" if isinstance(default, float) else "an integer"
    raise DataError(f"{where}: expected {kind} (like the default {default!r}), got {value!r}")
