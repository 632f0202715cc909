"""The embedding-network config (``conf/embed/*.yaml``): one YAML file with the sections below, overridden
from the command line by ``section.key=value`` (e.g. ``head.name=adaface mixup.kind=lmix mixup.alpha=0.5``).

``model`` and ``head`` are checked by the builders of the network and the heads (which know their own
parameters); every other section is checked here against its defaults. Unknown keys are errors that name
the file or the override.
"""

from __future__ import annotations

import argparse
import copy
import hashlib
import os
import shlex
import sys
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, TypeVar

import yaml

from ..config import load_config, typed
from ..tables import DataError

# Defaults of the sections checked here (docs/network.md §2, §4, §8.1).
DEFAULTS: dict[str, dict[str, Any]] = {
    "margin": {                 # ramp to the head's final margin (docs/network.md §2.4); epochs are 1-based
        "initial": 0.0,
        "start_epoch": 5,       # the ramp starts at the beginning of this epoch
        "fix_epoch": 9,         # ... and reaches the head's final margin at the beginning of this one
        "kind": "exp",          # exp (WeSpeaker) | linear
    },
    "mixup": {
        "kind": "none",         # none | imix (input features) | lmix (a hidden representation)
        "alpha": 1.0,           # lambda ~ Beta(alpha, alpha), then max(lambda, 1 - lambda)
        "layer": "mfa",         # lmix: stem | mfa | pooled (docs/network.md §4.2; mfa is the default L1)
        "prob": 1.0,            # fraction of batches mixed
    },
    "optim": {
        "name": "sgd",          # sgd (momentum, Nesterov) | adam
        "lr": 0.1,              # peak learning rate at the reference batch
        "final_lr": 5.0e-5,
        "schedule": "exp",      # exp: warm-up then exponential decay | constant
        "warmup_epochs": 2,
        "ref_batch": 64,        # lr scale = world_size * batch_size / ref_batch (WeSpeaker)
        "momentum": 0.9,
        "nesterov": True,
        "weight_decay": 1.0e-4,
        "grad_clip": 0.0,       # max gradient norm; 0 = off (supervised recipes do not clip)
    },
    "train": {
        "epochs": 30,
        "batch_size": 32,       # per process
        "num_workers": 1,       # DataLoader workers per process
        "cache_audio": False,   # workers keep decoded voiced audio in memory (corpora that fit in RAM)
        "seed": 0,
        "val_fraction": 0.1,    # utterances held out per (pseudo-)speaker for model selection
        "val_min_utts": 4,      # only speakers with at least this many utterances give validation ones
        "val_max_nontarget": 20000,  # validation trials: every target pair and at most this many others
        "val_every": 1,         # epochs between validations
        "select": "last",       # last | best (lowest validation EER) | avg<k> (mean of the last k epochs);
                                # last: measured on held-out training speakers (docs/network.md §6.7)
        "amp": False,           # bf16 autocast of the network on CUDA (the heads compute in fp32 regardless)
        "tf32": True,           # CUDA: TF32 matmuls/convolutions in fp32 training (10-bit mantissa products)
        "log_every": 20,        # iterations between progress lines
        "max_extract_frames": 6000,  # validation/extraction: longer utterances are embedded by chunks
    },
}
SECTIONS = ("model", "head", "margin", "mixup", "features", "augment", "optim", "train")
MIX_KINDS = ("none", "imix", "lmix")
MIX_LAYERS = ("stem", "mfa", "pooled")    # where l-mix may mix (i-mix mixes the input)


# ----------------------------------------------------------------------------------------------------
# Typed views of the sections checked here: the trainer reads these instead of the raw dicts

_S = TypeVar("_S", bound="_Section")


class _Section:
    """Base of the typed sections: ``SECTION`` names the section of :data:`DEFAULTS` whose keys are the
    dataclass's fields (in the same order; the defaults live in :data:`DEFAULTS` only)."""

    SECTION: ClassVar[str]

    @classmethod
    def from_dict(cls: type[_S], d: Mapping[str, Any]) -> _S:
        """The section ``d`` of a resolved config, typed and checked. A missing key takes its default; a
        value is converted to its default's type as the config loader does (a no-op on a resolved
        config); unknown keys and bad values are a :class:`DataError` naming the option."""
        sec, defaults = cls.SECTION, DEFAULTS[cls.SECTION]
        unknown = sorted(set(d) - set(defaults))
        if unknown:
            raise DataError(f"unknown option(s) {', '.join(f'{sec}.{k}' for k in unknown)} "
                            f"(known: {', '.join(sorted(defaults))})")
        obj = cls(**{k: typed(d.get(k, v), v, f"{sec}.{k}") for k, v in defaults.items()})
        obj.check()
        return obj

    def check(self) -> None:
        """Reject values that cannot work (nothing to check by default)."""


@dataclass(frozen=True)
class MarginConfig(_Section):
    """``margin``: the ramp from ``initial`` to the head's final margin over epochs ``start_epoch`` to
    ``fix_epoch`` (1-based; docs/network.md §2.4). The kind is checked by :class:`MarginSchedule`, which is
    only built for heads that have a margin."""

    SECTION: ClassVar[str] = "margin"
    initial: float
    start_epoch: int
    fix_epoch: int
    kind: str


@dataclass(frozen=True)
class MixupConfig(_Section):
    """``mixup``: i-mix / l-mix of a fraction ``prob`` of the batches (docs/network.md §4)."""

    SECTION: ClassVar[str] = "mixup"
    kind: str
    alpha: float
    layer: str
    prob: float

    def check(self) -> None:
        """Kind, l-mix layer and a positive Beta parameter."""
        if self.kind not in MIX_KINDS:
            raise DataError(f"mixup.kind={self.kind!r}: expected one of {', '.join(MIX_KINDS)}")
        if self.kind == "lmix" and self.layer not in MIX_LAYERS:
            raise DataError(f"mixup.layer={self.layer!r}: expected {' | '.join(MIX_LAYERS)}")
        if self.alpha <= 0:
            raise DataError(f"mixup.alpha={self.alpha}: must be positive")

    @property
    def mix_layer(self) -> str:
        """Where a mixed batch is mixed: ``input`` for i-mix, else ``layer``."""
        return "input" if self.kind == "imix" else self.layer


@dataclass(frozen=True)
class OptimConfig(_Section):
    """``optim``: optimiser and learning-rate schedule (docs/network.md §2.3)."""

    SECTION: ClassVar[str] = "optim"
    name: str
    lr: float
    final_lr: float
    schedule: str
    warmup_epochs: int
    ref_batch: int
    momentum: float
    nesterov: bool
    weight_decay: float
    grad_clip: float

    def check(self) -> None:
        """A known optimiser (the schedule kind is checked by :class:`LrSchedule`)."""
        if self.name not in ("sgd", "adam"):
            raise DataError(f"optim.name={self.name!r}: expected sgd | adam")


@dataclass(frozen=True)
class TrainConfig(_Section):
    """``train``: run length, batches, data loading, validation and selection, precision, logging."""

    SECTION: ClassVar[str] = "train"
    epochs: int
    batch_size: int
    num_workers: int
    cache_audio: bool
    seed: int
    val_fraction: float
    val_min_utts: int
    val_max_nontarget: int
    val_every: int
    select: str
    amp: bool
    tf32: bool
    log_every: int
    max_extract_frames: int

    @property
    def avg_epochs(self) -> int:
        """k of ``select: avg<k>`` (0 for best / last or a malformed rule)."""
        return avg_k(self.select)

    def check(self) -> None:
        """A known selection rule and at least one epoch and one sample per batch."""
        if self.select not in ("best", "last") and self.avg_epochs < 1:
            raise DataError(f"train.select={self.select!r}: expected best | last | avg<k> (k >= 1, the "
                            "last k epochs' weights averaged, e.g. avg3)")
        if self.epochs < 1 or self.batch_size < 1:
            raise DataError("train.epochs and train.batch_size must be at least 1")


def avg_k(select: str) -> int:
    """k of a ``train.select: avg<k>`` rule (0 for best / last or a malformed rule)."""
    k = select[3:]
    return int(k) if select.startswith("avg") and k.isdigit() else 0


def _set(cfg: dict[str, dict[str, Any]], key: str, value: Any, src: str) -> None:
    if "." not in key:
        raise DataError(f"{src}: expected section.key=value (sections: {', '.join(SECTIONS)})")
    sec, name = key.split(".", 1)
    if sec not in SECTIONS:
        raise DataError(f"{src}: unknown section '{sec}' (known: {', '.join(SECTIONS)})")
    if sec in DEFAULTS and name not in DEFAULTS[sec]:
        raise DataError(f"{src}: unknown option '{sec}.{name}' (known: {', '.join(sorted(DEFAULTS[sec]))})")
    if sec in DEFAULTS:
        value = typed(value, DEFAULTS[sec][name], f"{src}: {sec}.{name}")
    cfg.setdefault(sec, {})[name] = value


def load_embed_config(path: str | os.PathLike | None, overrides: Iterable[str] = ()
                      ) -> dict[str, dict[str, Any]]:
    """The resolved config: defaults, then the file's sections, then ``section.key=value`` overrides."""
    cfg: dict[str, dict[str, Any]] = {s: copy.deepcopy(DEFAULTS.get(s, {})) for s in SECTIONS}
    if path is not None:
        data = load_config(path)
        for sec, body in data.items():
            if sec not in SECTIONS:
                raise DataError(f"{path}: unknown section '{sec}' (known: {', '.join(SECTIONS)})")
            if not isinstance(body, Mapping):
                raise DataError(f"{path}: section '{sec}' must be a mapping")
            for k, v in body.items():
                _set(cfg, f"{sec}.{k}", v, f"{path}")
    for o in overrides:
        if "=" not in o:
            raise DataError(f"override {o!r}: expected section.key=value")
        k, v = o.split("=", 1)
        _set(cfg, k.strip().replace("-", "_"), yaml.safe_load(v), f"override {o!r}")
    check(cfg)
    return cfg


def check(cfg: Mapping[str, Mapping[str, Any]]) -> None:
    """Value checks of the sections owned here (the builders check model, head, features, augment): the
    typed sections' own checks, and a head name."""
    for section in (MixupConfig, OptimConfig, TrainConfig, MarginConfig):
        section.from_dict(cfg[section.SECTION])
    if "name" not in cfg["head"]:
        raise DataError("head.name is required (softmax | am | cosface | aam | ocsoftmax | adaface)")


def dump(cfg: Mapping[str, Any]) -> str:
    """The resolved config as YAML (written next to the model, and compared on resume)."""
    return yaml.safe_dump({k: dict(v) for k, v in cfg.items()}, sort_keys=False)


def config_hash(cfg: Mapping[str, Any]) -> str:
    """SHA-1 of the resolved config: equal for equal systems whatever overrides spelled them."""
    return hashlib.sha1(dump(cfg).encode()).hexdigest()


def main(argv: list[str] | None = None) -> int:
    """``python3 -m sslsv.embed.config hash CONFIG ['section.key=value ...']``: the hash of the resolved
    config (train_embedding.sh's stamp); a bad key or value is one ``ERROR:`` line."""
    ap = argparse.ArgumentParser(prog="python3 -m sslsv.embed.config")
    ap.add_argument("what", choices=["hash"])
    ap.add_argument("config")
    ap.add_argument("overrides", nargs="?", default="", help="one string of section.key=value overrides")
    a = ap.parse_args(argv)
    try:
        cfg = load_embed_config(a.config, shlex.split(a.overrides))
    except DataError as e:
        print(f"ERROR: {e}", file=sys.stderr)
        return 1
    print(config_hash(cfg))
    return 0


if __name__ == "__main__":
    sys.exit(main())
