"""The embedding-network config (``conf/embed/*.yaml``): one YAML file with the sections below, overridden
from the command line by ``section.key=value`` (e.g. ``head.name=adaface mixup.kind=lmix mixup.alpha=0.5``).

``model`` and ``head`` are checked by the builders of the network and the heads (which know their own
parameters); every other section is checked here against its defaults. Unknown keys are errors that name
the file or the override.
"""

from __future__ import annotations

import copy
import os
from collections.abc import Iterable, Mapping
from typing import Any

import yaml

from ..config import load_config, typed
from ..tables import DataError

# Defaults of the sections checked here (NNET.md §2, §4, §8.1).
DEFAULTS: dict[str, dict[str, Any]] = {
    "margin": {                 # margin ramp of the head's final margin (NNET.md §2.4); epochs are 1-based
        "initial": 0.0,
        "start_epoch": 5,       # the ramp starts at the beginning of this epoch
        "fix_epoch": 9,         # ... and reaches the head's final margin at the beginning of this one
        "kind": "exp",          # exp (WeSpeaker) | linear
    },
    "mixup": {
        "kind": "none",         # none | imix (input features) | lmix (a hidden representation)
        "alpha": 1.0,           # lambda ~ Beta(alpha, alpha), then max(lambda, 1 - lambda)
        "layer": "mfa",         # lmix: stem | mfa | pooled (NNET.md §4.2; mfa is the default L1)
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
        "select": "best",       # best (lowest validation EER) | last: which epoch becomes final.pt
        "amp": False,           # bf16 autocast of the network on CUDA (the heads compute in fp32 regardless)
        "tf32": True,           # CUDA: TF32 matmuls/convolutions in fp32 training (10-bit mantissa products)
        "log_every": 20,        # iterations between progress lines
        "max_extract_frames": 6000,  # validation/extraction: longer utterances are embedded by chunks
    },
}
SECTIONS = ("model", "head", "margin", "mixup", "features", "augment", "optim", "train")
MIX_KINDS = ("none", "imix", "lmix")


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
    """Value checks of the sections owned here (the builders check model, head, features, augment)."""
    mix = cfg["mixup"]
    if mix["kind"] not in MIX_KINDS:
        raise DataError(f"mixup.kind={mix['kind']!r}: expected one of {', '.join(MIX_KINDS)}")
    if mix["kind"] == "lmix" and mix["layer"] not in ("stem", "mfa", "pooled"):
        raise DataError(f"mixup.layer={mix['layer']!r}: expected stem | mfa | pooled")
    if float(mix["alpha"]) <= 0:
        raise DataError(f"mixup.alpha={mix['alpha']}: must be positive")
    if cfg["optim"]["name"] not in ("sgd", "adam"):
        raise DataError(f"optim.name={cfg['optim']['name']!r}: expected sgd | adam")
    if cfg["train"]["select"] not in ("best", "last"):
        raise DataError(f"train.select={cfg['train']['select']!r}: expected best | last")
    if "name" not in cfg["head"]:
        raise DataError("head.name is required (softmax | am | cosface | aam | ocsoftmax | adaface)")
    if int(cfg["train"]["epochs"]) < 1 or int(cfg["train"]["batch_size"]) < 1:
        raise DataError("train.epochs and train.batch_size must be at least 1")


def dump(cfg: Mapping[str, Any]) -> str:
    """The resolved config as YAML (written next to the model, and compared on resume)."""
    return yaml.safe_dump({k: dict(v) for k, v in cfg.items()}, sort_keys=False)
