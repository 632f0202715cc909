"""What a recipe's ``exp/<name>`` holds, read back for the report: the clustering runs of stage 6
(``cluster/*/metrics.json``, ``curve.tsv``), the embedding systems of stages 8-9 (``embed/*/``), the
i-vector baselines of stage 5 (``scores/*/result.json``) and the study cells run by local/run_study.sh
(``study/*/cells.tsv``). Nothing is recomputed; whatever is missing is listed in ``Results.notes``.
"""

from __future__ import annotations

import json
import re
import shlex
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import yaml

from ..naming import SUPERVISED

DEEP_ESTIMATORS = frozenset({"deep_im", "dec"})
NOT_RECORDED = "not recorded"


@dataclass
class ClusterRun:
    """One pseudo-label set: a stage-6 run."""

    tag: str
    method: str
    estimator: str
    input_norm: str
    requested: int | None           # C asked for (None: the method chose it)
    found: int
    metrics: dict[str, float | int]
    curve: Path | None              # per-epoch curve of the deep methods
    eval_labels: str | None
    date: str
    machine: str
    command: str | None
    vectors: str | None = None      # what was clustered (metrics.json "vectors": i-vectors, embeddings)

    @property
    def family(self) -> str:
        return "deep" if self.estimator in DEEP_ESTIMATORS else "classical"


@dataclass
class Score:
    eer: float
    min_dcf: float                  # minDCF at p_target 0.01


@dataclass
class System:
    """One embedding network of stages 8-9 and its scores (None until stage 9 has run)."""

    name: str
    labels: str                     # a ClusterRun tag, or "supervised" (the true training labels)
    config: str                     # stem of the conf/embed file
    head: str
    mixup: str
    alpha: float
    cosine: Score | None
    asnorm: Score | None
    trials: str | None
    num_trials: int | None
    epoch: str                      # "<selected>/<epochs>"
    date: str
    machine: str
    command: str | None
    head_opts: dict[str, Any] = field(default_factory=dict)   # config.yaml's head section


@dataclass
class Baseline:
    name: str
    score: Score
    trials: str
    num_trials: int
    date: str
    machine: str


@dataclass
class StudyCell:
    study: str
    cell: str
    date: str
    machine: str
    command: str


@dataclass
class Results:
    exp: Path
    clusters: dict[str, ClusterRun] = field(default_factory=dict)
    systems: list[System] = field(default_factory=list)
    baselines: list[Baseline] = field(default_factory=list)
    study_cells: list[StudyCell] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    true_count: int | None = None


def _json(path: Path, notes: list[str]) -> dict[str, Any] | None:
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as e:
        notes.append(f"{path}: unreadable ({e}); left out")
        return None


def _iso(date: str) -> str:
    """``date``'s default output (``Thu Nov 26 08:08:15 UTC 2026``) as ``2026-11-26 08:08:15``; other
    strings unchanged."""
    try:
        return datetime.strptime(date, "%a %b %d %H:%M:%S %Z %Y").strftime("%Y-%m-%d %H:%M:%S")
    except ValueError:
        return date


def _log_header(log: Path) -> tuple[list[str] | None, str | None]:
    """The command line and start date that run.py writes at the top of a log."""
    if not log.is_file():
        return None, None
    cmd, date = None, None
    with open(log, encoding="utf-8", errors="replace") as f:
        for _, line in zip(range(3), f, strict=False):
            if line.startswith("# Started at "):
                date = _iso(line[len("# Started at "):].strip())
            elif line.startswith("# ") and cmd is None:
                try:
                    cmd = shlex.split(line[2:])
                except ValueError:
                    cmd = line[2:].split()
    return cmd, date


def _relative_command(cmd: list[str]) -> str:
    """A logged command with the checkout's absolute path to pyscripts/ dropped."""
    out = [re.sub(r"^.*/(pyscripts|steps|local|utils|conf)/", r"\1/", w) for w in cmd]
    return shlex.join(out)


def _cluster_runs(exp: Path, res: Results) -> None:
    root = exp / "cluster"
    files = sorted(root.glob("*/metrics.json"))
    if not files:
        res.notes.append(f"no clustering runs under {root} (stage 6 not run)")
    for f in files:
        m = _json(f, res.notes)
        if m is None:
            continue
        curve = f.parent / "curve.tsv"
        cmd = _log_header(f.parent / "log" / "cluster.log")[0]
        res.clusters[f.parent.name] = ClusterRun(
            tag=f.parent.name, method=m.get("method", f.parent.name), estimator=m.get("estimator", "?"),
            input_norm=m.get("input_norm", "?"), requested=m.get("n_clusters_requested"),
            found=int(m.get("num_clusters_found", m.get("metrics", {}).get("num_clusters", 0))),
            metrics={k: v if isinstance(v, int) else float(v) for k, v in m.get("metrics", {}).items()
                     if v is not None},
            curve=curve if curve.is_file() else None, eval_labels=m.get("eval_labels"),
            date=m.get("date", NOT_RECORDED), machine=m.get("machine", NOT_RECORDED),
            command=_relative_command(cmd) if cmd else None, vectors=m.get("vectors"))
    for d in sorted(p for p in root.glob("*") if p.is_dir()) if root.is_dir() else []:
        if d.name not in res.clusters:
            res.notes.append(f"{d}: no metrics.json (stage 6 unfinished or failed)")


def _labels_of(data_dir: str) -> str | None:
    """Label source of a training data dir named in an older tree's log (no system.json there)."""
    d = data_dir.rstrip("/")
    if d.endswith("/utt2spk"):
        d = d[: -len("/utt2spk")]
    m = re.search(r"_pl_([^/]+)$", d)
    if m:
        return m.group(1)
    return SUPERVISED if re.search(r"_train$", d) else None


def _older_system_record(d: Path, cfg_file: Path, cmd: list[str] | None, result: dict | None
                         ) -> dict[str, Any] | None:
    """What system.json says, recovered from the names of a tree made before stage 8 wrote it: the
    training data dir (in result.json or the training command) and the ``--config`` of the command."""
    labels = _labels_of(result["utt2spk"]) if result and result.get("utt2spk") else None
    if labels is None and cmd and len(cmd) >= 2:
        labels = _labels_of(cmd[-2])
    if labels is None:
        return None
    cfg = yaml.safe_load(cfg_file.read_text()) or {}
    head = str(cfg.get("head", {}).get("name", "aam"))
    mix = cfg.get("mixup", {}) or {}
    kind, alpha = str(mix.get("kind", "none")), float(mix.get("alpha", 1.0))
    if cmd and "--config" in cmd[:-1]:
        config = Path(cmd[cmd.index("--config") + 1]).stem
    else:
        suffix = f"_{head}" + ("" if kind == "none" else f"_{kind}{alpha:g}")
        stem = d.name[len(labels) + 1:] if d.name.startswith(labels + "_") else d.name
        config = stem[: -len(suffix)] if stem.endswith(suffix) else stem
    return {"labels": labels, "config": config, "head": head, "mixup": kind, "alpha": alpha}


def _system(d: Path, res: Results) -> System | None:
    cfg_file = d / "config.yaml"
    cmd, started = _log_header(d / "log" / "train.log")
    if not cfg_file.is_file():
        res.notes.append(f"{d}: no config.yaml (stage 8 never started there); left out")
        return None
    result = _json(d / "scores" / "result.json", res.notes)
    final = _json(d / "final.json", res.notes) or {}
    rec = _json(d / "system.json", res.notes)
    if rec is None:
        rec = _older_system_record(d, cfg_file, cmd, result)
    if rec is None:
        res.notes.append(f"{d}: cannot tell which labels it was trained on (no system.json, "
                         "scores/result.json or log/train.log); left out")
        return None
    labels, config, head = rec["labels"], rec["config"], rec["head"]
    kind, alpha = rec["mixup"], float(rec["alpha"])
    cos = asn = None
    if result:
        cos = Score(result["cosine"]["eer"], result["cosine"]["min_dcf_0.01"])
        asn = Score(result["asnorm"]["eer"], result["asnorm"]["min_dcf_0.01"])
    elif (d / "final.pt").is_file():
        res.notes.append(f"{d.name}: trained but not scored (stage 9 not run)")
    else:
        res.notes.append(f"{d.name}: training unfinished (no final.pt)")
    src = result or final
    date = src.get("date") or (started or NOT_RECORDED)
    try:
        head_opts = dict((yaml.safe_load(cfg_file.read_text(encoding="utf-8")) or {}).get("head") or {})
    except (OSError, yaml.YAMLError, AttributeError, TypeError, ValueError):
        head_opts = {}
    return System(name=d.name, labels=labels, config=config, head=head, mixup=kind, alpha=alpha, cosine=cos,
                  asnorm=asn, trials=result.get("trials") if result else None,
                  num_trials=result["cosine"].get("num_trials") if result else None,
                  epoch=_epoch_cell(final),
                  date=date, machine=src.get("machine", NOT_RECORDED),
                  command=_relative_command(cmd) if cmd else None, head_opts=head_opts)


def _epoch_cell(final: dict[str, Any] | None) -> str:
    """The report's "epoch (sel./all)" cell: the selected epoch, or the averaged range ("avg 10-12")."""
    if not final:
        return "–"
    avg = final.get("averaged_epochs") or []
    sel = f"avg {avg[0]}-{avg[-1]}" if avg else final.get("final_epoch", "?")
    return f"{sel}/{final.get('epochs', '?')}"


def _true_count(res: Results) -> int | None:
    for c in res.clusters.values():
        if c.eval_labels and Path(c.eval_labels).is_file():
            with open(c.eval_labels, encoding="utf-8") as f:
                return len({line.split()[1] for line in f if len(line.split()) >= 2})
    return None


def collect(exp: str | Path) -> Results:
    """Read everything under ``exp`` (an ``exp/<name>`` dir); never fails on a partial tree."""
    exp = Path(exp)
    res = Results(exp)
    if not exp.is_dir():
        res.notes.append(f"{exp} does not exist (no stage has run)")
        return res
    for name in ("ivector_cosine", "ivector_plda_supervised"):
        r = _json(exp / "scores" / name / "result.json", res.notes)
        if r is None:
            res.notes.append(f"no i-vector baseline {name} (stage 5 not run)")
            continue
        logs = sorted((exp / "scores" / name / "log").glob("*.log"))
        started = _log_header(logs[0])[1] if logs else None
        res.baselines.append(Baseline(name, Score(r["eer"], r["min_dcf_0.01"]), r.get("trials", "?"),
                                      int(r.get("num_trials", 0)), r.get("date") or started or NOT_RECORDED,
                                      r.get("machine", NOT_RECORDED)))
    _cluster_runs(exp, res)
    embed = exp / "embed"
    dirs = sorted(p for p in embed.glob("*") if p.is_dir()) if embed.is_dir() else []
    if not dirs:
        res.notes.append(f"no embedding systems under {embed} (stages 8-9 not run)")
    for d in dirs:
        s = _system(d, res)
        if s is not None:
            res.systems.append(s)
    for f in sorted(exp.glob("study/*/cells.tsv")):
        for line in f.read_text(encoding="utf-8").splitlines():
            parts = line.split("\t")
            if len(parts) == 4:
                res.study_cells.append(StudyCell(f.parent.name, *parts))
    res.true_count = _true_count(res)
    return res
