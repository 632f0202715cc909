"""Training of the speaker-embedding network on a (pseudo-)labelled data dir: one process, or several with
``torchrun`` (DDP; NCCL on GPUs, gloo on CPUs).

Every random choice is a pure function of (seed, epoch, step, rank) -- the data of item i at epoch e, the
batch order, the mixup draws, the SpecAugment masks -- and the learning rate and margin are functions of
the global iteration, so a run killed after any epoch resumes exactly: on CPU, 2 epochs in one run equal
1 epoch, kill, resume, 1 epoch, bit for bit. Checkpoints still store every generator state
(docs/network.md §2.7) so that code that does draw from the global generators stays reproducible.

Layout of ``<out-dir>``::

    config.yaml          the resolved config
    train_log.tsv        one row per epoch: loss, accuracy, lr, margin, validation EER, times
    log/train.log        (written by the step script) a progress line every train.log_every steps, or a
                         progress bar when stderr is a terminal
    ckpt/ep<NNN>.pt      full training state at the end of each epoch; ckpt/latest names the newest
    val_utts, val_trials the validation split carved from the training data (never the test trials)
    final.pt             the selected epoch's network: {"model", "config", "epoch", "val_eer", ...}

Structure (as WeSpeaker's ``bin/train.py`` and ``executor.run_epoch``): :class:`RunConfig` types the
resolved config once; :func:`setup_training` builds the run (data, network, optimiser, schedules, resume
state, validation set); :func:`run_epoch` trains one epoch, :func:`validate` computes the held-out EER,
:func:`checkpoint_state` / :func:`resume` write and read the training state, and :func:`train` drives them.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import random
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch import nn
from tqdm import tqdm

from ..provenance import provenance
from ..scoring import compute_eer
from ..tables import DataError, atomic_path, write_lines
from . import data as edata
from .config import DEFAULTS, MarginConfig, MixupConfig, OptimConfig, TrainConfig, avg_k, dump
from .ecapa import build_model
from .extract import embed_all
from .heads import build_head, is_label_free
from .mixup import MixSpec, sample_mix
from .schedule import LrSchedule, MarginSchedule

CKPT_FORMAT = 1
LOG_COLUMNS = ("epoch", "step", "lr", "margin", "loss", "acc", "val_eer", "samples_per_s", "data_wait_s",
               "epoch_s")


log = logging.getLogger(__name__)   # train_embedding.py prints it as "train_embedding: <message>"


# ----------------------------------------------------------------------------------------------------
# Distributed setup


@dataclass(frozen=True)
class Dist:
    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        return self.rank == 0

    def barrier(self) -> None:
        if self.world > 1:
            dist.barrier()


def init_distributed(device_spec: str) -> tuple[Dist, torch.device]:
    """Process group from torchrun's environment (``WORLD_SIZE`` > 1), and this process's device."""
    from ..device import resolve_device

    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local = int(os.environ.get("LOCAL_RANK", "0"))
    device = resolve_device(device_spec)
    if device.type == "cuda" and world > 1:
        device = torch.device("cuda", local)
    elif device.type == "cuda" and device.index is None:
        device = torch.device("cuda", torch.cuda.current_device())
    if device.type == "cuda":
        torch.cuda.set_device(device)
    if world > 1 and not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    return Dist(rank, world, local), device


# ----------------------------------------------------------------------------------------------------
# The module DDP wraps: embedding network and head, so the head's gradients are all-reduced too


class SpeakerNet(nn.Module):
    """Embedding network + classification head; ``forward`` returns per-sample losses and embeddings."""

    def __init__(self, model: nn.Module, head: nn.Module) -> None:
        super().__init__()
        self.model = model
        self.head = head

    def forward(self, x: torch.Tensor, y: torch.Tensor, mix: Any = None) -> tuple[torch.Tensor, torch.Tensor]:
        emb = self.model(x, mix=mix)
        if mix is None:
            return self.head.loss_per_sample(emb.float(), y), emb
        return self.head.mixed_loss_per_sample(emb.float(), y, y[mix.perm], mix.lam), emb


# ----------------------------------------------------------------------------------------------------
# Validation split and trials (from the training data's own labels: the test trials are never read)


def split_validation(labels: np.ndarray, fraction: float, min_utts: int, seed: int
                     ) -> tuple[np.ndarray, np.ndarray]:
    """Indices (train, val): from every speaker with at least ``min_utts`` utterances, round(fraction * n)
    (at least 1) random utterances are held out; smaller speakers stay whole in training."""
    rng = np.random.default_rng([seed, 0x5A1])
    val = []
    if fraction > 0:
        order = np.argsort(labels, kind="stable")
        bounds = np.flatnonzero(np.diff(labels[order])) + 1
        for group in np.split(order, bounds):
            if len(group) >= min_utts:
                k = max(1, int(round(fraction * len(group))))
                val.extend(rng.choice(group, size=k, replace=False).tolist())
    val_idx = np.sort(np.asarray(val, dtype=np.int64))
    train_idx = np.setdiff1d(np.arange(len(labels)), val_idx)
    return train_idx, val_idx


def validation_trials(labels: np.ndarray, max_nontarget: int, seed: int
                      ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Every same-label pair (targets) and at most ``max_nontarget`` random different-label pairs."""
    i, j = np.triu_indices(len(labels), k=1)
    same = labels[i] == labels[j]
    non = np.flatnonzero(~same)
    if len(non) > max_nontarget:
        non = np.sort(np.random.default_rng([seed, 0x7A1]).choice(non, size=max_nontarget, replace=False))
    keep = np.concatenate([np.flatnonzero(same), non])
    return i[keep], j[keep], same[keep]


def validation_eer(embs: np.ndarray, ti: np.ndarray, tj: np.ndarray, target: np.ndarray) -> float:
    """EER (%) of cosine scores after subtracting the validation set's mean embedding."""
    x = embs - embs.mean(axis=0)
    x /= np.linalg.norm(x, axis=1, keepdims=True) + 1e-12
    s = np.einsum("ij,ij->i", x[ti], x[tj])
    eer, _ = compute_eer(s[target], s[~target])
    return 100.0 * float(eer)


# ----------------------------------------------------------------------------------------------------
# Checkpoints


def with_defaults(cfg: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """A checkpoint's config with the options added to the code since it was written set to their
    defaults, so that a newer version resumes an older run whose settings it keeps."""
    out = {sec: dict(body) for sec, body in cfg.items()}
    for sec, body in DEFAULTS.items():
        for k, v in body.items():
            out.setdefault(sec, {}).setdefault(k, v)
    return out


def file_sha1(path: str | os.PathLike) -> str:
    return hashlib.sha1(Path(path).read_bytes()).hexdigest()


def rng_state() -> dict[str, Any]:
    return {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state(),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None}


def set_rng_state(s: dict[str, Any]) -> None:
    random.setstate(s["python"])
    np.random.set_state(s["numpy"])
    torch.set_rng_state(s["torch"])
    if s.get("cuda") is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(s["cuda"])


def save_checkpoint(path: Path, state: dict[str, Any]) -> None:
    """Atomic write (temporary file, fsync, rename), then ``ckpt/latest`` names it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            torch.save(state, f)
            f.flush()
            os.fsync(f.fileno())
    write_lines(path.parent / "latest", [path.name])


def latest_checkpoint(ckpt_dir: Path) -> Path | None:
    p = ckpt_dir / "latest"
    if not p.is_file():
        return None
    name = p.read_text().strip()
    return ckpt_dir / name if (ckpt_dir / name).is_file() else None


# ----------------------------------------------------------------------------------------------------
# Checkpoint write and resume


def checkpoint_state(s: TrainSetup, epoch: int, stats: EpochStats, val_eer: float) -> dict[str, Any]:
    """The full training state at the end of ``epoch`` (docs/network.md §2.7): what :func:`resume` loads,
    and the schedules, sampler and labels that say what the weights were trained on."""
    step = epoch * s.steps_per_epoch
    return {"format_version": CKPT_FORMAT, "epoch": epoch, "global_step": step,
            "model": s.net.model.state_dict(), "head": s.net.head.state_dict(),
            "optimizer": s.opt.state_dict(), "rng": rng_state(),
            # the schedules are pure functions of the iteration: their state is the step
            "lr_scheduler": {"current_iter": step, **asdict(s.lr_sched)},
            "margin_sched": None if s.m_sched is None else {"current_iter": step, "margin": stats.margin,
                                                            **asdict(s.m_sched)},
            "sampler": {"base_seed": s.rc.train.seed, "epoch": epoch},
            "num_classes": s.dataset.num_classes_total, "label_map_sha1": s.data.label_hash,
            "config": s.rc.raw, "speakers": [] if s.rc.label_free else list(s.data.items.speakers),
            "torch_version": torch.__version__, "val_eer": val_eer}


def _training_part(cfg: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """The config without ``train.select`` (read only after the last epoch): a finished run is re-selected
    by resuming it with another rule, without retraining."""
    return {**cfg, "train": {k: v for k, v in cfg["train"].items() if k != "select"}}


def resume(ckpt_dir: Path, net: SpeakerNet, opt: torch.optim.Optimizer, rc: RunConfig, label_hash: str,
           data_dir: str | os.PathLike, d: Dist) -> int:
    """Load the newest checkpoint of ``ckpt_dir`` (if any) into ``net`` and ``opt`` and restore the global
    generators; returns the first epoch still to run. A checkpoint of other labels or of another config
    is refused rather than silently continued."""
    last = latest_checkpoint(ckpt_dir)
    if last is None:
        return 1
    st = torch.load(last, map_location="cpu", weights_only=False)
    if st["label_map_sha1"] != label_hash:
        raise DataError(f"{last}: trained on different labels than {data_dir}/utt2spk; use a new output "
                        f"dir or remove {ckpt_dir}")
    if _training_part(with_defaults(st["config"])) != _training_part(rc.raw):
        raise DataError(f"{last}: the config differs from the one the checkpoint was trained with "
                        f"({ckpt_dir.parent / 'config.yaml'}); use a new output dir or remove {ckpt_dir}")
    net.model.load_state_dict(st["model"])
    net.head.load_state_dict(st["head"])
    opt.load_state_dict(st["optimizer"])
    set_rng_state(st["rng"])
    if d.main:
        log.info(f"resuming from {last} (epoch {st['epoch']} done, step {st['global_step']})")
    return st["epoch"] + 1


# ----------------------------------------------------------------------------------------------------
# Setup: typed config, data, network, optimiser, schedules, resume state, validation set, loader options


@dataclass(frozen=True)
class RunConfig:
    """The resolved config as the trainer reads it, typed and checked once (:meth:`from_dict`); ``raw``
    is the dict itself (written to config.yaml, stored in checkpoints, compared on resume) and the only
    source of the ``model`` and ``head`` sections, which their builders check."""

    raw: dict[str, dict[str, Any]]
    train: TrainConfig
    optim: OptimConfig
    margin: MarginConfig
    mixup: MixupConfig
    features: edata.FeatureConfig
    augment: edata.AugConfig

    @property
    def label_free(self) -> bool:
        """Training without labels: the head is a label-free objective (``head.name: ntxent``)."""
        return is_label_free(self.raw["head"]["name"])

    @classmethod
    def from_dict(cls, cfg: dict[str, dict[str, Any]]) -> RunConfig:
        """From a resolved config (:func:`sslsv.embed.config.load_embed_config`); a label-free head takes
        no mixup (its targets are labels)."""
        if is_label_free(cfg["head"]["name"]) and cfg["mixup"]["kind"] != "none":
            raise DataError(f"head.name={cfg['head']['name']} trains without labels: mixup.kind must be "
                            "none")
        rc = cls(cfg, TrainConfig.from_dict(cfg["train"]), OptimConfig.from_dict(cfg["optim"]),
                 MarginConfig.from_dict(cfg["margin"]), MixupConfig.from_dict(cfg["mixup"]),
                 edata.FeatureConfig.from_dict(cfg["features"]), edata.AugConfig.from_dict(cfg["augment"]))
        if rc.augment.compute == "device" and rc.features.compute != "device":
            raise DataError("augment.compute=device corrupts the waveform in the training step, so the "
                            "features must be made there too: set features.compute=device")
        return rc


@dataclass(frozen=True)
class TrainData:
    """The labelled utterances and their split; ``label_hash`` (SHA-1 of utt2spk) ties checkpoints to
    the labels they were trained on."""

    items: edata.TrainingList
    labels: np.ndarray
    train_idx: np.ndarray
    val_idx: np.ndarray
    label_hash: str


def read_data(rc: RunConfig, data_dir: str | os.PathLike) -> TrainData:
    """Read and check the data dir and carve the validation split (before anything long starts).

    For a label-free head (``ntxent``) the speaker labels are not read into training at all: every
    utterance is its own instance (label = its index; babble then comes from any other utterance), the
    run is tied to the utterance list instead of utt2spk, and nothing is held out (there are no labels to
    validate against; ``train.select`` falls back to the last epoch, or averages with ``avg<k>``)."""
    items = edata.read_training_list(data_dir, use_vad=rc.features.use_vad)
    if rc.label_free:
        n = len(items)
        items = edata.TrainingList(items.utts, np.arange(n, dtype=np.int64), list(items.utts), items.wavs,
                                   items.wav_where, items.vads, items.vad_where)
        empty = np.zeros(0, dtype=np.int64)
        utt_hash = hashlib.sha1("\n".join(items.utts).encode()).hexdigest()
        return TrainData(items, items.labels, np.arange(n, dtype=np.int64), empty, utt_hash)
    labels = np.asarray(items.labels, dtype=np.int64)
    tc = rc.train
    train_idx, val_idx = split_validation(labels, tc.val_fraction, tc.val_min_utts, tc.seed)
    return TrainData(items, labels, train_idx, val_idx, file_sha1(Path(data_dir) / "utt2spk"))


@dataclass(frozen=True)
class ValidationSet:
    """Held-out features (computed once: dither 0, no augmentation) and their trials (index pairs into
    ``feats`` and whether each pair is a target)."""

    feats: list[tuple[str, np.ndarray]]
    ti: np.ndarray
    tj: np.ndarray
    target: np.ndarray


def prepare_validation(rc: RunConfig, data: TrainData, out: Path) -> ValidationSet | None:
    """(Main rank.) The validation set, its trials written to ``<out>/val_trials``; None without held-out
    utterances or when the trials lack targets or nontargets (no EER then)."""
    if not len(data.val_idx):
        return None
    items = data.items
    feats = [(items.utts[i], items.utterance_features(i, rc.features)) for i in data.val_idx]
    ti, tj, tgt = validation_trials(data.labels[data.val_idx], rc.train.val_max_nontarget, rc.train.seed)
    names = [items.utts[i] for i in data.val_idx]
    write_lines(out / "val_trials", [f"{names[a]} {names[b]} {'target' if t else 'nontarget'}"
                                     for a, b, t in zip(ti, tj, tgt, strict=True)])
    if not tgt.any() or tgt.all():
        return None
    return ValidationSet(feats, ti, tj, tgt)


def _seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def _optimizer(oc: OptimConfig, params: Sequence[nn.Parameter]) -> torch.optim.Optimizer:
    if oc.name == "sgd":
        return torch.optim.SGD(params, lr=oc.lr, momentum=oc.momentum, nesterov=oc.nesterov,
                               weight_decay=oc.weight_decay)
    return torch.optim.Adam(params, lr=oc.lr, weight_decay=oc.weight_decay)


def _build_network(rc: RunConfig, data: TrainData, device: torch.device
                   ) -> tuple[edata.ChunkDataset, SpeakerNet]:
    """Seed the global generators, then build the network, the training dataset and the head, in this
    order: the initial weights are draws of the seeded torch generator, and the head's size is the
    dataset's number of classes (3K with speed perturbation)."""
    _seed_everything(rc.train.seed)
    model = build_model({"feat_dim": rc.features.feat_dim, **rc.raw["model"]})
    head_params = {k: v for k, v in rc.raw["head"].items() if k != "name"}
    views = int(head_params.get("views", 2)) if rc.label_free else 1
    dataset = edata.ChunkDataset(data.items.subset(data.train_idx), rc.features, rc.augment,
                                 num_classes=len(data.items.speakers), seed=rc.train.seed,
                                 cache_audio=rc.train.cache_audio, views=views)
    head = build_head(rc.raw["head"]["name"], model.embed_dim, dataset.num_classes_total, **head_params)
    return dataset, SpeakerNet(model, head).to(device)


def _schedules(rc: RunConfig, head: nn.Module, steps_per_epoch: int, world: int
               ) -> tuple[LrSchedule, MarginSchedule | None]:
    """Learning-rate schedule over the whole run, and the margin ramp of a head that has a margin."""
    oc, mg, batch = rc.optim, rc.margin, rc.train.batch_size
    lr_sched = LrSchedule(oc.lr, oc.final_lr, rc.train.epochs * steps_per_epoch,
                          oc.warmup_epochs * steps_per_epoch, scale=world * batch / float(oc.ref_batch),
                          kind=oc.schedule)
    final_margin = getattr(head, "final_margin", None)
    if final_margin is None:
        return lr_sched, None
    return lr_sched, MarginSchedule(mg.initial, float(final_margin), (mg.start_epoch - 1) * steps_per_epoch,
                                    (mg.fix_epoch - 1) * steps_per_epoch, kind=mg.kind)


def _loader_options(tc: TrainConfig, device: torch.device) -> dict[str, Any]:
    """DataLoader keyword arguments of every epoch."""
    kw: dict[str, Any] = {"num_workers": tc.num_workers, "pin_memory": device.type == "cuda"}
    if tc.num_workers > 0:
        kw.update(worker_init_fn=edata.worker_init_fn, prefetch_factor=4)
    return kw


@dataclass
class TrainSetup:
    """Everything built before the first epoch (WeSpeaker's bin/train.py part): what :func:`run_epoch`,
    :func:`validate` and :func:`checkpoint_state` work with."""

    rc: RunConfig
    d: Dist
    device: torch.device
    out: Path
    data: TrainData
    dataset: edata.ChunkDataset
    net: SpeakerNet                  # its state is what checkpoints hold
    ddp: nn.Module                   # what the step calls: ``net``, or ``net`` in DistributedDataParallel
    opt: torch.optim.Optimizer
    steps_per_epoch: int
    lr_sched: LrSchedule
    m_sched: MarginSchedule | None
    start_epoch: int                 # 1, or the epoch after the checkpoint resumed from
    val: ValidationSet | None        # None on other ranks than the main one, or without an EER to compute
    loader_kw: dict[str, Any]
    frontend: nn.Module | None       # features made in the step (features.compute=device)
    use_amp: bool

    @property
    def ckpt_dir(self) -> Path:
        return self.out / "ckpt"


def setup_training(rc: RunConfig, data_dir: str | os.PathLike, out: Path, d: Dist, device: torch.device
                   ) -> TrainSetup:
    """Build the run (resuming from ``<out>/ckpt`` when it holds a checkpoint) and, on the main rank,
    write config.yaml, val_utts and val_trials. The order of the steps is that of every random draw."""
    tc = rc.train
    data = read_data(rc, data_dir)
    dataset, net = _build_network(rc, data, device)
    opt = _optimizer(rc.optim, list(net.parameters()))
    steps_per_epoch = len(data.train_idx) // (tc.batch_size * d.world)
    if steps_per_epoch == 0:
        raise DataError(f"{data_dir}: {len(data.train_idx)} training utterances give no full batch of "
                        f"{tc.batch_size} on {d.world} process(es); lower train.batch_size")
    lr_sched, m_sched = _schedules(rc, net.head, steps_per_epoch, d.world)
    start_epoch = resume(out / "ckpt", net, opt, rc, data.label_hash, data_dir, d)

    if d.main:
        out.mkdir(parents=True, exist_ok=True)
        with atomic_path(out / "config.yaml") as tmp:
            tmp.write_text(dump(rc.raw))
        write_lines(out / "val_utts", [data.items.utts[i] for i in data.val_idx])
        log.info(f"{len(data.train_idx)} training utterances of {len(data.items.speakers)} speakers "
                 f"({dataset.num_classes_total} classes), {len(data.val_idx)} held out for validation; "
                 f"{steps_per_epoch} steps/epoch x {tc.epochs} epochs, batch {tc.batch_size} x {d.world} "
                 f"process(es) on {device}; {sum(p.numel() for p in net.model.parameters()):,} network + "
                 f"{sum(p.numel() for p in net.head.parameters()):,} head parameters")
    d.barrier()

    ddp: nn.Module = net
    if d.world > 1:
        ddp = nn.parallel.DistributedDataParallel(net, device_ids=[device.index] if device.type == "cuda"
                                                  else None)
    val = prepare_validation(rc, data, out) if d.main else None
    loader_kw = _loader_options(tc, device)
    use_amp = tc.amp and device.type == "cuda"
    frontend = edata.device_frontend(rc.features, device)
    if device.type == "cuda":
        # Fixed-shape chunks: let cuDNN pick the fastest kernels once. resolve_device() turns TF32 off
        # for the GMM stages; network training tolerates it (and is several times faster with it).
        torch.backends.cudnn.benchmark = True
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = tc.tf32
    return TrainSetup(rc, d, device, out, data, dataset, net, ddp, opt, steps_per_epoch, lr_sched, m_sched,
                      start_epoch, val, loader_kw, frontend, use_amp)


# ----------------------------------------------------------------------------------------------------
# One epoch (WeSpeaker's executor.run_epoch) and validation


def _epoch_order(n: int, batch: int, seed: int, epoch: int, d: Dist) -> np.ndarray:
    """This rank's item indices for ``epoch``, as whole batches: a global shuffle seeded by (seed, epoch),
    cut to a multiple of world * batch so every rank runs the same number of steps (unequal counts would
    hang the all-reduce), then every world-th item."""
    perm = np.random.default_rng([seed, epoch, 0x0DE]).permutation(n)
    usable = (n // (batch * d.world)) * batch * d.world
    return perm[:usable][d.rank::d.world]


class _Batches(torch.utils.data.Sampler):
    def __init__(self, order: np.ndarray, batch: int) -> None:
        self.order, self.batch = order, batch

    def __len__(self) -> int:
        return len(self.order) // self.batch

    def __iter__(self):
        for b in range(len(self)):
            yield self.order[b * self.batch:(b + 1) * self.batch].tolist()


@dataclass
class EpochStats:
    """One epoch's training figures, summed over the ranks: per-sample loss and correct predictions,
    samples, and the last step's learning rate and margin; ``data_wait_s`` is this rank's wait for data."""

    loss_sum: float
    acc_sum: float
    n_seen: float
    lr: float
    margin: float
    data_wait_s: float

    @property
    def loss(self) -> float:
        return self.loss_sum / self.n_seen

    @property
    def acc(self) -> float:
        return self.acc_sum / self.n_seen


def _step_inputs(s: TrainSetup, x: torch.Tensor | dict[str, torch.Tensor], step_rng: np.random.Generator
                 ) -> tuple[torch.Tensor, MixSpec | None]:
    """A batch as the network takes it, and its mixing (or None): device corruption and dither (``x`` a
    dict of plans), device features, CMN, SpecAugment, mixup.
    SpecAugment's seed and then the mixup draws come from the step's generator ``step_rng``."""
    aug, mc = s.rc.augment, s.rc.mixup
    x = edata.cmn(edata.device_inputs(x, s.rc.features, aug, s.frontend))
    if aug.spec_aug:
        gen = torch.Generator(device="cpu").manual_seed(int(step_rng.integers(2**62)))
        x = edata.spec_augment(x, aug, gen)
    mix = None
    if mc.kind != "none" and step_rng.random() < mc.prob:
        mix = sample_mix(x.shape[0], mc.alpha, mc.mix_layer, step_rng, s.device)
    return x, mix


def run_epoch(s: TrainSetup, epoch: int) -> EpochStats:
    """Train one epoch (1-based) and return its figures, summed over the ranks (which are checked to hold
    equal parameters afterwards). Every draw is a function of (seed, epoch, step, rank), and the lr and
    margin of (global step), so an epoch depends on nothing but the state it starts from."""
    tc, oc, d, device, net = s.rc.train, s.rc.optim, s.d, s.device, s.net
    s.dataset.set_epoch(epoch)
    order = _epoch_order(len(s.data.train_idx), tc.batch_size, tc.seed, epoch, d)
    loader = torch.utils.data.DataLoader(s.dataset, batch_sampler=_Batches(order, tc.batch_size),
                                         **s.loader_kw)
    net.train()
    loss_sum = acc_sum = 0.0
    n_seen = 0
    wait = 0.0
    lr = margin = float("nan")
    t_wait = time.perf_counter()
    bar = tqdm(loader, total=s.steps_per_epoch, desc=f"epoch {epoch}", unit="batch", leave=False,
               disable=not (d.main and sys.stderr.isatty()))
    for b, (x, y) in enumerate(bar):
        step = (epoch - 1) * s.steps_per_epoch + b
        x = edata.to_device(x, device)
        y = y.to(device, non_blocking=True)
        if device.type == "cuda" and b % 50 == 0:
            torch.cuda.synchronize()
        wait += time.perf_counter() - t_wait
        lr = s.lr_sched(step)
        for g in s.opt.param_groups:
            g["lr"] = lr
        margin = s.m_sched(step) if s.m_sched is not None else float("nan")
        if s.m_sched is not None:
            net.head.update(margin)
        if s.dataset.views > 1:                   # (B, V, ...) views: the network sees B·V chunks
            x = {k: v.flatten(0, 1) for k, v in x.items()} if isinstance(x, dict) else x.flatten(0, 1)
        x, mix = _step_inputs(s, x, np.random.default_rng([tc.seed, epoch, b, d.rank]))
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=s.use_amp):
            per_sample, emb = s.ddp(x, y, mix)
        loss = per_sample.mean()
        s.opt.zero_grad(set_to_none=True)
        loss.backward()
        if oc.grad_clip > 0:
            nn.utils.clip_grad_norm_(net.parameters(), oc.grad_clip)
        s.opt.step()
        with torch.no_grad():
            acc_sum += net.head.num_correct(emb.float().detach(), y)
        loss_sum += float(loss.detach()) * len(y)
        n_seen += len(y)
        if not bar.disable:
            bar.set_postfix(loss=f"{loss_sum / n_seen:.3f}", acc=f"{acc_sum / n_seen:.3f}")
        elif d.main and (b + 1) % tc.log_every == 0:
            log.info(f"epoch {epoch} step {b + 1}/{s.steps_per_epoch} loss {loss_sum / n_seen:.4f} "
                     f"acc {acc_sum / n_seen:.3f} lr {lr:.3g} margin {margin:.3f}")
        t_wait = time.perf_counter()
    if d.world > 1:
        sums = torch.tensor([loss_sum, acc_sum, n_seen], dtype=torch.float64, device=device)
        dist.all_reduce(sums)
        loss_sum, acc_sum, n_seen = sums.tolist()
        _check_ranks_in_sync(net, d, device, epoch)
    return EpochStats(loss_sum, acc_sum, n_seen, lr, margin, wait)


def validate(model: nn.Module, val: ValidationSet, device: torch.device, max_frames: int) -> float:
    """Validation EER (%) of ``model`` on the held-out utterances (eval mode; the mode is restored)."""
    embs = np.stack([e for _, e in embed_all(model, val.feats, device, max_frames)])
    return validation_eer(embs, val.ti, val.tj, val.target)


# ----------------------------------------------------------------------------------------------------
# The driver


def _record_epoch(s: TrainSetup, epoch: int, stats: EpochStats, val_eer: float, train_s: float,
                  epoch_s: float) -> None:
    """(Main rank.) The epoch's row of train_log.tsv, its log line and its checkpoint."""
    row = {"epoch": epoch, "step": epoch * s.steps_per_epoch, "lr": stats.lr, "margin": stats.margin,
           "loss": stats.loss, "acc": stats.acc, "val_eer": val_eer,
           "samples_per_s": stats.n_seen / train_s, "data_wait_s": stats.data_wait_s, "epoch_s": epoch_s}
    _append_log(s.out / "train_log.tsv", row, fresh=epoch == 1)
    val = "n/a" if math.isnan(val_eer) else f"{val_eer:.2f}%"
    log.info("epoch {epoch}: loss {loss:.4f} acc {acc:.3f} val EER {val} lr {lr:.3g} margin "
             "{margin:.3f} ({samples_per_s:.1f} samples/s, data wait {data_wait_s:.1f} s, {epoch_s:.1f} s)"
             .format(val=val, **row))
    save_checkpoint(s.ckpt_dir / f"ep{epoch:03d}.pt", checkpoint_state(s, epoch, stats, val_eer))


def train(cfg: dict[str, dict[str, Any]], data_dir: str | os.PathLike, out_dir: str | os.PathLike,
          device_spec: str = "auto", max_epochs: int | None = None) -> dict[str, Any]:
    """Train (or resume) into ``out_dir``; returns the summary written to ``<out-dir>/final.json``.

    ``max_epochs`` stops after that many epochs of the schedule (the schedule is still the full
    ``train.epochs``): used to simulate an interrupted run.
    """
    rc = RunConfig.from_dict(cfg)
    d, device = init_distributed(device_spec)
    s = setup_training(rc, data_dir, Path(out_dir), d, device)
    epochs = rc.train.epochs
    stop = epochs if max_epochs is None else min(epochs, max_epochs)
    for epoch in range(s.start_epoch, stop + 1):
        t0 = time.perf_counter()
        stats = run_epoch(s, epoch)
        train_s = time.perf_counter() - t0
        val_eer = float("nan")
        if s.val is not None and (epoch % rc.train.val_every == 0 or epoch == epochs):
            val_eer = validate(s.net.model, s.val, device, rc.train.max_extract_frames)
        if d.main:
            _record_epoch(s, epoch, stats, val_eer, train_s, time.perf_counter() - t0)
        d.barrier()

    summary: dict[str, Any] = {}
    if d.main and stop == epochs:
        summary = _finalise(s.out, s.ckpt_dir, epochs, rc.train.select)
    d.barrier()
    return summary


def _check_ranks_in_sync(net: nn.Module, d: Dist, device: torch.device, epoch: int) -> None:
    """All ranks must hold the same parameters after an epoch (DDP averages the gradients; a divergence
    means a bug such as unequal step counts): compare float64 checksums of every parameter."""
    with torch.no_grad():
        mine = torch.stack([p.double().sum() for p in net.parameters()]).to(device)
    every = [torch.zeros_like(mine) for _ in range(d.world)]
    dist.all_gather(every, mine)
    if not all(torch.equal(every[0], e) for e in every[1:]):
        raise RuntimeError(f"epoch {epoch}: the {d.world} ranks' parameters differ")
    if d.main:
        log.info(f"epoch {epoch}: {d.world} ranks in sync (parameter checksums equal)")


def _append_log(path: Path, row: dict[str, Any], fresh: bool) -> None:
    """Add one epoch's row to train_log.tsv (rewritten atomically; rows of later epochs, left over from an
    interrupted run that is being redone, are dropped)."""
    lines = path.read_text().splitlines() if path.is_file() and not fresh else ["\t".join(LOG_COLUMNS)]
    lines = [ln for ln in lines if ln.split("\t")[0] == "epoch" or int(ln.split("\t")[0]) < row["epoch"]]
    fmt = {k: (f"{v:.6g}" if isinstance(v, float) else str(v)) for k, v in row.items()}
    lines.append("\t".join(fmt[k] for k in LOG_COLUMNS))
    write_lines(path, lines)


def best_epoch(log_path: Path) -> dict[str, Any]:
    """The epoch of lowest validation EER in train_log.tsv; ties go to the later epoch (the validation
    EER moves in steps of 1/targets, and on a small split a plateau of equal values is common, along
    which training goes on improving). ``{"epoch": 0, ...}`` when no epoch was validated."""
    best: dict[str, Any] = {"epoch": 0, "val_eer": math.inf}
    for row in log_path.read_text().splitlines()[1:] if log_path.is_file() else []:
        f = dict(zip(LOG_COLUMNS, row.split("\t"), strict=True))
        v = float(f["val_eer"])
        if not math.isnan(v) and v <= best["val_eer"]:
            best = {"epoch": int(f["epoch"]), "val_eer": v}
    return best


def average_states(states: Sequence[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    """Element-wise mean of model state dicts (WeSpeaker's ``avg_model``): floating-point tensors (weights,
    batch-norm running statistics) are averaged in float64 and cast back; integer ones (batch-norm
    ``num_batches_tracked``) are taken from the last state."""
    if not states:
        raise ValueError("average_states: no states to average")
    avg = {}
    for k, last in states[-1].items():
        if last.is_floating_point():
            avg[k] = (sum(st[k].double() for st in states) / len(states)).to(last.dtype)
        else:
            avg[k] = last.clone()
    return avg


def kept_epochs(select: str, epochs: int, best: int) -> list[int]:
    """The epochs whose weights ``train.select`` keeps after ``epochs`` epochs: ``[best]`` (the last
    epoch when none was validated, ``best`` 0), ``[epochs]`` for ``last``, the last k for ``avg<k>``."""
    k = avg_k(select)
    if k > 0:
        return list(range(max(1, epochs - k + 1), epochs + 1))
    if select == "best":
        return [best or epochs]
    if select == "last":
        return [epochs]
    raise ValueError(f"unknown selection rule {select!r} (best, last or avg<k>)")


def _finalise(out: Path, ckpt_dir: Path, epochs: int, select: str) -> dict[str, Any]:
    """Write final.pt (the selected epoch's network, or for ``select: avg<k>`` the average of the last
    k epochs' weights) and final.json."""
    best = best_epoch(out / "train_log.tsv")
    kept = kept_epochs(select, epochs, best["epoch"])
    if select == "best" and best["epoch"] == 0:
        select = "last: no validation EER"   # too few held-out utterances for target and nontarget trials
    epoch = kept[-1]
    st = torch.load(ckpt_dir / f"ep{epoch:03d}.pt", map_location="cpu", weights_only=False)
    averaged: list[int] = []
    val_eer = st["val_eer"]
    if avg_k(select) > 0:
        averaged = kept
        states = [torch.load(ckpt_dir / f"ep{e:03d}.pt", map_location="cpu", weights_only=False)["model"]
                  for e in averaged[:-1]] + [st["model"]]
        st = {**st, "model": average_states(states)}
        val_eer = float("nan")               # the average was never validated
    final = {"model": st["model"], "config": st["config"], "epoch": epoch, "val_eer": val_eer,
             "speakers": st["speakers"], "num_classes": st["num_classes"], "averaged_epochs": averaged}
    with atomic_path(out / "final.pt") as tmp:
        torch.save(final, tmp)
    summary = {"final_epoch": epoch, "select": select, "val_eer": val_eer, "best": best,
               "epochs": epochs, "averaged_epochs": averaged, **provenance()}
    with atomic_path(out / "final.json") as tmp:
        tmp.write_text(json.dumps(summary, indent=2) + "\n")
    what = f"the average of epochs {averaged[0]}-{averaged[-1]}" if averaged else f"epoch {epoch}"
    val = "" if math.isnan(val_eer) else f"; validation EER {val_eer:.2f}%"
    log.info(f"final.pt = {what} ({select}{val})")
    return summary


def load_final(path: str | os.PathLike, device: torch.device) -> nn.Module:
    """The embedding network of a ``final.pt`` (or of a full checkpoint), in eval mode on ``device``."""
    return model_from_state(torch.load(path, map_location="cpu", weights_only=False), device)


def model_from_state(st: Mapping[str, Any], device: torch.device) -> nn.Module:
    """The embedding network of a loaded ``final.pt`` / checkpoint dict (its ``config`` and ``model``)."""
    feat_dim = edata.FeatureConfig.from_dict(st["config"]["features"]).feat_dim
    model = build_model({"feat_dim": feat_dim, **st["config"]["model"]})
    model.load_state_dict(st["model"])
    return model.to(device).eval()
