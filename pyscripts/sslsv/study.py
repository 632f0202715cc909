"""Study grids: which cells (clustering method x number of clusters x input normalisation x margin head x
regulariser) of the papers' sweep to run, read from ``conf/study/*.yaml``.

A study file holds one or more ``grids``; each grid is the Cartesian product of its lists, and the study is
the union of its grids in file order (a cell named by two grids runs once)::

    embed_config: conf/embed/ecapa_xs.yaml   # run.sh --embed-config (optional)
    supervised: true                         # also the true-label reference for every (head, regulariser)
    grids:
      - name: table1
        methods: [kmeans, imsat, cimc, camsat]   # conf/cluster/<method>.yaml
        multipliers: [1]                         # C = multiplier x the number of training speakers
        input_norms: [config]                    # config (the method's own) | l2 | standard | none
        heads: [aam]                             # softmax | am | cosface | aam | ocsoftmax | adaface
        mixups: [none]                           # none | imix | lmix
        supervised: true                         # this grid's (head, regulariser) references [study's]

A cell's pseudo-label set is named ``<method>_c<C>``, or ``<method>_<norm>_c<C>`` when its input
normalisation differs from the method's config; its embedding system is that name plus run.sh's
``_<config>_<head>[_<mixup><alpha>]``.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from . import naming
from .cluster.registry import resolved_config, takes_n_clusters
from .embed.config import MIX_KINDS
from .embed.heads import HEADS
from .tables import DataError

HEAD_NAMES = tuple(HEADS)      # the margin heads and regularisers of stage 8, in table order
MIXUPS = MIX_KINDS
INPUT_NORMS = ("config", "l2", "standard", "none")
_TOP_KEYS = {"description", "embed_config", "cluster_opts", "embed_opts", "supervised", "grids"}
_GRID_KEYS = {"name", "methods", "multipliers", "input_norms", "heads", "mixups", "supervised"}
_GRID_DEFAULTS: dict[str, list[Any]] = {"multipliers": [1], "input_norms": ["config"], "heads": ["aam"],
                                        "mixups": ["none"]}


@dataclass(frozen=True)
class Cell:
    """One cell of a study: a pseudo-label set and the embedding system trained on it."""

    grid: str
    method: str
    multiplier: float
    input_norm: str          # the normalisation actually used (never "config")
    renamed: bool            # input_norm differs from the method config's: the tag says so
    head: str
    mixup: str
    supervised: bool         # the grid wants the true-label reference of (head, mixup)

    def num_clusters(self, num_speakers: int) -> int:
        return naming.num_clusters(self.multiplier, num_speakers)

    def cluster_tag(self, num_speakers: int) -> str:
        return naming.cluster_tag(self.method, self.num_clusters(num_speakers),
                                  self.input_norm if self.renamed else "")

    def cell_id(self, num_speakers: int) -> str:
        return f"{self.cluster_tag(num_speakers)}_{self.head}_{self.mixup}"


@dataclass(frozen=True)
class Study:
    path: Path
    cells: tuple[Cell, ...]
    embed_config: str | None
    cluster_opts: str
    embed_opts: str

    def run_options(self, cell: Cell, num_speakers: int, supervised: bool) -> list[str]:
        """run.sh options of stages 6-9 for ``cell`` (``supervised``: also the true-label reference)."""
        cluster_opts = self.cluster_opts
        if cell.renamed:
            cluster_opts = f"{cluster_opts} input_norm={cell.input_norm}".strip()
        opts = ["--cluster-method", cell.method, "--num-clusters", str(cell.num_clusters(num_speakers)),
                "--cluster-tag", cell.cluster_tag(num_speakers), "--cluster-opts", cluster_opts,
                "--embed-head", cell.head, "--embed-mixup", cell.mixup,
                "--supervised", str(supervised).lower()]
        if self.embed_config:
            opts += ["--embed-config", self.embed_config]
        if self.embed_opts:
            opts += ["--embed-opts", self.embed_opts]
        return opts

    def references(self) -> list[tuple[str, str]]:
        """The (head, regulariser) pairs whose true-label reference the study trains."""
        return list(dict.fromkeys((c.head, c.mixup) for c in self.cells if c.supervised))

    def planned(self, num_speakers: int) -> list[tuple[str, list[str]]]:
        """Every cell as (cell id, run.sh options), the supervised reference riding on the first cell of
        each (head, regulariser) pair."""
        seen: set[tuple[str, str]] = set()
        out = []
        for c in self.cells:
            sup = c.supervised and (c.head, c.mixup) not in seen
            if sup:
                seen.add((c.head, c.mixup))
            out.append((c.cell_id(num_speakers), self.run_options(c, num_speakers, sup)))
        return out


def _config_norm(conf_dir: Path, method: str, where: str) -> str:
    f = conf_dir / f"{method}.yaml"
    if not f.is_file():
        known = " ".join(sorted(p.stem for p in conf_dir.glob("*.yaml")))
        raise DataError(f"{where}: no clustering method {method!r} ({f} missing; known: {known})")
    try:
        takes_c = takes_n_clusters(method, conf_dir)   # the registry's answer: its class has n_clusters
    except DataError as e:
        raise DataError(f"{where}: method {method!r}: {e}") from e
    if not takes_c:
        raise DataError(f"{where}: {method!r} chooses its own number of clusters; run it with "
                        "local/cluster_sweep.sh, not in a study grid")
    return str(resolved_config(f).get("input_norm", "l2"))


def _list(grid: dict, key: str, where: str, allowed: tuple[str, ...] | None = None) -> list[Any]:
    v = grid.get(key, _GRID_DEFAULTS.get(key))
    if v is None:
        raise DataError(f"{where}: '{key}' is required")
    if not isinstance(v, list) or not v:
        raise DataError(f"{where}: '{key}' must be a non-empty list, got {v!r}")
    if allowed:
        bad = [x for x in v if str(x) not in allowed]
        if bad:
            raise DataError(f"{where}: {key} {bad} not in {', '.join(allowed)}")
    return v


def load_study(path: str | Path, conf_dir: str | Path = "conf/cluster") -> Study:
    """Read and check a study file; errors name the file, the grid and the key at fault."""
    path, conf_dir = Path(path), Path(conf_dir)
    if not path.is_file():
        raise DataError(f"{path}: no such study file")
    try:
        raw = yaml.safe_load(path.read_text())
    except yaml.YAMLError as e:
        raise DataError(f"{path}: not valid YAML: {e}") from e
    if not isinstance(raw, dict):
        raise DataError(f"{path}: expected a mapping with 'grids'")
    unknown = set(raw) - _TOP_KEYS
    if unknown:
        raise DataError(f"{path}: unknown key(s) {sorted(unknown)} (known: {sorted(_TOP_KEYS)})")
    grids = raw.get("grids")
    if not isinstance(grids, list) or not grids:
        raise DataError(f"{path}: 'grids' must be a non-empty list")
    sup = raw.get("supervised", True)
    if not isinstance(sup, bool):
        raise DataError(f"{path}: supervised must be true or false, got {sup!r}")
    cells: list[Cell] = []
    seen: set[tuple] = set()
    for i, g in enumerate(grids, 1):
        where = f"{path}: grid {i}"
        if not isinstance(g, dict):
            raise DataError(f"{where}: expected a mapping")
        where = f"{path}: grid {i} ({g.get('name', 'unnamed')})"
        unknown = set(g) - _GRID_KEYS
        if unknown:
            raise DataError(f"{where}: unknown key(s) {sorted(unknown)} (known: {sorted(_GRID_KEYS)})")
        methods = [str(m) for m in _list(g, "methods", where)]
        mults = _list(g, "multipliers", where)
        for m in mults:
            if isinstance(m, bool) or not isinstance(m, (int, float)) or m <= 0:
                raise DataError(f"{where}: multipliers must be positive numbers, got {m!r}")
        norms = [str(x) for x in _list(g, "input_norms", where, INPUT_NORMS)]
        heads = [str(x) for x in _list(g, "heads", where, HEAD_NAMES)]
        mixups = [str(x) for x in _list(g, "mixups", where, MIXUPS)]
        grid_sup = g.get("supervised", sup)
        if not isinstance(grid_sup, bool):
            raise DataError(f"{where}: supervised must be true or false, got {grid_sup!r}")
        for method in methods:
            own = _config_norm(conf_dir, method, where)
            for mult in mults:
                for norm in norms:
                    used = own if norm == "config" else norm
                    for head in heads:
                        for mix in mixups:
                            key = (method, float(mult), used, head, mix)
                            if key in seen:
                                continue
                            seen.add(key)
                            cells.append(Cell(str(g.get("name", f"grid{i}")), method, float(mult), used,
                                              used != own, head, mix, grid_sup))
    embed_config = raw.get("embed_config")
    if embed_config is not None and not Path(embed_config).is_file():
        raise DataError(f"{path}: embed_config {embed_config} does not exist")
    return Study(path, tuple(cells), embed_config, str(raw.get("cluster_opts") or ""),
                 str(raw.get("embed_opts") or ""))


def format_plan(study: Study, num_speakers: int) -> list[str]:
    """``<cell-id> <shell-quoted run.sh options>`` lines, as local/run_study.sh reads them."""
    return [f"{cid} {shlex.join(opts)}" for cid, opts in study.planned(num_speakers)]
