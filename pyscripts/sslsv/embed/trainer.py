"""Training of the speaker-embedding network on a (pseudo-)labelled data dir: one process, or several with
``torchrun`` (DDP; NCCL on GPUs, gloo on CPUs).

Every random choice is a pure function of (seed, epoch, step, rank) -- the data of item i at epoch e, the
batch order, the mixup draws, the SpecAugment masks -- and the learning rate and margin are functions of
the global iteration, so a run killed after any epoch resumes exactly: on CPU, 2 epochs in one run equal
1 epoch, kill, resume, 1 epoch, bit for bit. Checkpoints still store every generator state (NNET.md §2.7)
so that code that does draw from the global generators stays reproducible.

Layout of ``<out-dir>``::

    config.yaml          the resolved config
    train_log.tsv        one row per epoch: loss, accuracy, lr, margin, validation EER, times
    log/train.log        (written by the step script) a progress line every train.log_every steps, or a
                         progress bar when stderr is a terminal
    ckpt/ep<NNN>.pt      full training state at the end of each epoch; ckpt/latest names the newest
    val_utts, val_trials the validation split carved from the training data (never the test trials)
    final.pt             the selected epoch's network: {"model", "config", "epoch", "val_eer", ...}
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import random
import sys
import time
from collections.abc import Sequence
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
from .config import DEFAULTS, dump
from .ecapa import build_model
from .extract import embed_all
from .heads import build_head
from .mixup import sample_mix
from .schedule import LrSchedule, MarginSchedule

CKPT_FORMAT = 1
LOG_COLUMNS = ("epoch", "step", "lr", "margin", "loss", "acc", "val_eer", "samples_per_s", "data_wait_s",
               "epoch_s")


def log(msg: str) -> None:
    print(f"train_embedding: {msg}", file=sys.stderr, flush=True)


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
# Training


def _seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def _optimizer(cfg: dict[str, Any], params: Sequence[nn.Parameter]) -> torch.optim.Optimizer:
    if cfg["name"] == "sgd":
        return torch.optim.SGD(params, lr=cfg["lr"], momentum=cfg["momentum"], nesterov=bool(cfg["nesterov"]),
                               weight_decay=cfg["weight_decay"])
    return torch.optim.Adam(params, lr=cfg["lr"], weight_decay=cfg["weight_decay"])


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


def train(cfg: dict[str, dict[str, Any]], data_dir: str | os.PathLike, out_dir: str | os.PathLike,
          device_spec: str = "auto", max_epochs: int | None = None) -> dict[str, Any]:
    """Train (or resume) into ``out_dir``; returns the summary written to ``<out-dir>/final.json``.

    ``max_epochs`` stops after that many epochs of the schedule (the schedule is still the full
    ``train.epochs``): used to simulate an interrupted run.
    """
    d, device = init_distributed(device_spec)
    out = Path(out_dir)
    tc, oc, mc = cfg["train"], cfg["optim"], cfg["mixup"]
    seed = int(tc["seed"])
    feat_cfg = edata.FeatureConfig.from_dict(cfg["features"])
    aug_cfg = edata.AugConfig.from_dict(cfg["augment"])

    # Inputs are read and checked before anything long starts.
    items = edata.read_training_list(data_dir, use_vad=feat_cfg.use_vad)
    labels = np.asarray(items.labels, dtype=np.int64)
    num_spk = len(items.speakers)
    train_idx, val_idx = split_validation(labels, float(tc["val_fraction"]), int(tc["val_min_utts"]), seed)
    label_hash = file_sha1(Path(data_dir) / "utt2spk")

    _seed_everything(seed)
    model = build_model({"feat_dim": feat_cfg.feat_dim, **cfg["model"]})
    head_params = {k: v for k, v in cfg["head"].items() if k != "name"}
    dataset = edata.ChunkDataset(items.subset(train_idx), feat_cfg, aug_cfg, num_classes=num_spk, seed=seed,
                                 cache_audio=bool(tc["cache_audio"]))
    head = build_head(cfg["head"]["name"], model.embed_dim, dataset.num_classes_total, **head_params)
    net = SpeakerNet(model, head).to(device)
    opt = _optimizer(oc, list(net.parameters()))

    batch = int(tc["batch_size"])
    steps_per_epoch = len(train_idx) // (batch * d.world)
    if steps_per_epoch == 0:
        raise DataError(f"{data_dir}: {len(train_idx)} training utterances give no full batch of {batch} "
                        f"on {d.world} process(es); lower train.batch_size")
    epochs = int(tc["epochs"])
    total = epochs * steps_per_epoch
    lr_sched = LrSchedule(float(oc["lr"]), float(oc["final_lr"]), total,
                          int(oc["warmup_epochs"]) * steps_per_epoch,
                          scale=d.world * batch / float(oc["ref_batch"]), kind=oc["schedule"])
    final_margin = getattr(head, "final_margin", None)
    m_sched = None
    if final_margin is not None:
        mg = cfg["margin"]
        m_sched = MarginSchedule(float(mg["initial"]), float(final_margin),
                                 (int(mg["start_epoch"]) - 1) * steps_per_epoch,
                                 (int(mg["fix_epoch"]) - 1) * steps_per_epoch, kind=mg["kind"])

    # Resume.
    ckpt_dir = out / "ckpt"
    start_epoch = 1
    last = latest_checkpoint(ckpt_dir)
    if last is not None:
        st = torch.load(last, map_location="cpu", weights_only=False)
        if st["label_map_sha1"] != label_hash:
            raise DataError(f"{last}: trained on different labels than {data_dir}/utt2spk; use a new output "
                            f"dir or remove {ckpt_dir}")
        if with_defaults(st["config"]) != cfg:
            raise DataError(f"{last}: the config differs from the one the checkpoint was trained with "
                            f"({out / 'config.yaml'}); use a new output dir or remove {ckpt_dir}")
        net.model.load_state_dict(st["model"])
        net.head.load_state_dict(st["head"])
        opt.load_state_dict(st["optimizer"])
        set_rng_state(st["rng"])
        start_epoch = st["epoch"] + 1
        if d.main:
            log(f"resuming from {last} (epoch {st['epoch']} done, step {st['global_step']})")

    if d.main:
        out.mkdir(parents=True, exist_ok=True)
        with atomic_path(out / "config.yaml") as tmp:
            tmp.write_text(dump(cfg))
        write_lines(out / "val_utts", [items.utts[i] for i in val_idx])
        log(f"{len(train_idx)} training utterances of {num_spk} speakers ({dataset.num_classes_total} "
            f"classes), {len(val_idx)} held out for validation; {steps_per_epoch} steps/epoch x {epochs} "
            f"epochs, batch {batch} x {d.world} process(es) on {device}; "
            f"{sum(p.numel() for p in net.model.parameters()):,} network + "
            f"{sum(p.numel() for p in net.head.parameters()):,} head parameters")
    d.barrier()

    ddp = net
    if d.world > 1:
        ddp = nn.parallel.DistributedDataParallel(net, device_ids=[device.index] if device.type == "cuda"
                                                  else None)

    # Validation features are computed once (dither 0, no augmentation).
    val_feats: list[tuple[str, np.ndarray]] = []
    if d.main and len(val_idx):
        val_feats = [(items.utts[i], items.utterance_features(i, feat_cfg)) for i in val_idx]
        ti, tj, tgt = validation_trials(labels[val_idx], int(tc["val_max_nontarget"]), seed)
        names = [items.utts[i] for i in val_idx]
        write_lines(out / "val_trials", [f"{names[a]} {names[b]} {'target' if t else 'nontarget'}"
                                         for a, b, t in zip(ti, tj, tgt, strict=True)])
        if not tgt.any() or tgt.all():
            val_feats = []   # no EER without both kinds of trials

    loader_kw: dict[str, Any] = {"num_workers": int(tc["num_workers"]), "pin_memory": device.type == "cuda"}
    if loader_kw["num_workers"] > 0:
        loader_kw.update(worker_init_fn=edata.worker_init_fn, prefetch_factor=4)
    use_amp = bool(tc["amp"]) and device.type == "cuda"
    frontend = edata.device_frontend(feat_cfg, device)
    if device.type == "cuda":
        # Fixed-shape chunks: let cuDNN pick the fastest kernels once. resolve_device() turns TF32 off
        # for the GMM stages; network training tolerates it (and is several times faster with it).
        torch.backends.cudnn.benchmark = True
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = bool(tc["tf32"])
    stop = epochs if max_epochs is None else min(epochs, max_epochs)
    for epoch in range(start_epoch, stop + 1):
        t0 = time.perf_counter()
        dataset.set_epoch(epoch)
        order = _epoch_order(len(train_idx), batch, seed, epoch, d)
        loader = torch.utils.data.DataLoader(dataset, batch_sampler=_Batches(order, batch), **loader_kw)
        net.train()
        loss_sum = acc_sum = 0.0
        n_seen = 0
        wait = 0.0
        t_wait = time.perf_counter()
        bar = tqdm(loader, total=steps_per_epoch, desc=f"epoch {epoch}", unit="batch", leave=False,
                   disable=not (d.main and sys.stderr.isatty()))
        for b, (x, y) in enumerate(bar):
            step = (epoch - 1) * steps_per_epoch + b
            x = x.to(device, non_blocking=True)
            y = y.to(device, non_blocking=True)
            if device.type == "cuda" and b % 50 == 0:
                torch.cuda.synchronize()
            wait += time.perf_counter() - t_wait
            lr = lr_sched(step)
            for g in opt.param_groups:
                g["lr"] = lr
            margin = m_sched(step) if m_sched is not None else float("nan")
            if m_sched is not None:
                head.update(margin)
            step_rng = np.random.default_rng([seed, epoch, b, d.rank])
            if frontend is not None:
                with torch.no_grad():
                    x = frontend(x)
            x = edata.cmn(x)
            if aug_cfg.spec_aug:
                gen = torch.Generator(device="cpu").manual_seed(int(step_rng.integers(2**62)))
                x = edata.spec_augment(x, aug_cfg, gen)
            mix = None
            if mc["kind"] != "none" and step_rng.random() < float(mc["prob"]):
                layer = "input" if mc["kind"] == "imix" else mc["layer"]
                mix = sample_mix(x.shape[0], float(mc["alpha"]), layer, step_rng, device)
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=use_amp):
                per_sample, emb = ddp(x, y, mix)
            loss = per_sample.mean()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            if float(oc["grad_clip"]) > 0:
                nn.utils.clip_grad_norm_(net.parameters(), float(oc["grad_clip"]))
            opt.step()
            with torch.no_grad():
                acc_sum += float((head.predict(emb.float().detach()) == y).float().sum())
            loss_sum += float(loss.detach()) * len(y)
            n_seen += len(y)
            if not bar.disable:
                bar.set_postfix(loss=f"{loss_sum / n_seen:.3f}", acc=f"{acc_sum / n_seen:.3f}")
            elif d.main and (b + 1) % int(tc["log_every"]) == 0:
                log(f"epoch {epoch} step {b + 1}/{steps_per_epoch} loss {loss_sum / n_seen:.4f} "
                    f"acc {acc_sum / n_seen:.3f} lr {lr:.3g} margin {margin:.3f}")
            t_wait = time.perf_counter()
        if d.world > 1:
            sums = torch.tensor([loss_sum, acc_sum, n_seen], dtype=torch.float64, device=device)
            dist.all_reduce(sums)
            loss_sum, acc_sum, n_seen = sums.tolist()
            _check_ranks_in_sync(net, d, device, epoch)
        train_s = time.perf_counter() - t0

        val_eer = float("nan")
        if d.main and val_feats and (epoch % int(tc["val_every"]) == 0 or epoch == epochs):
            embs = np.stack([e for _, e in embed_all(net.model, val_feats, device,
                                                     int(tc["max_extract_frames"]))])
            val_eer = validation_eer(embs, ti, tj, tgt)
        epoch_s = time.perf_counter() - t0
        if d.main:
            row = {"epoch": epoch, "step": epoch * steps_per_epoch, "lr": lr, "margin": margin,
                   "loss": loss_sum / n_seen, "acc": acc_sum / n_seen, "val_eer": val_eer,
                   "samples_per_s": n_seen / train_s, "data_wait_s": wait, "epoch_s": epoch_s}
            _append_log(out / "train_log.tsv", row, fresh=epoch == 1)
            val = "n/a" if math.isnan(val_eer) else f"{val_eer:.2f}%"
            log("epoch {epoch}: loss {loss:.4f} acc {acc:.3f} val EER {val} lr {lr:.3g} margin "
                "{margin:.3f} ({samples_per_s:.1f} samples/s, data wait {data_wait_s:.1f} s, {epoch_s:.1f} s)"
                .format(val=val, **row))
            state = {"format_version": CKPT_FORMAT, "epoch": epoch, "global_step": epoch * steps_per_epoch,
                     "model": net.model.state_dict(), "head": net.head.state_dict(),
                     "optimizer": opt.state_dict(), "rng": rng_state(),
                     # the schedules are pure functions of the iteration: their state is the step
                     "lr_scheduler": {"current_iter": epoch * steps_per_epoch, **asdict(lr_sched)},
                     "margin_sched": None if m_sched is None else {"current_iter": epoch * steps_per_epoch,
                                                                    "margin": margin, **asdict(m_sched)},
                     "sampler": {"base_seed": seed, "epoch": epoch}, "num_classes": dataset.num_classes_total,
                     "label_map_sha1": label_hash, "config": cfg, "speakers": list(items.speakers),
                     "torch_version": torch.__version__, "val_eer": val_eer}
            save_checkpoint(ckpt_dir / f"ep{epoch:03d}.pt", state)
        d.barrier()

    summary: dict[str, Any] = {}
    if d.main and stop == epochs:
        summary = _finalise(out, ckpt_dir, epochs, tc["select"])
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
        log(f"epoch {epoch}: {d.world} ranks in sync (parameter checksums equal)")


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


def _finalise(out: Path, ckpt_dir: Path, epochs: int, select: str) -> dict[str, Any]:
    """Write final.pt (the selected epoch's network) and final.json."""
    best = best_epoch(out / "train_log.tsv")
    if select == "best" and best["epoch"] == 0:
        select = "last: no validation EER"   # too few held-out utterances for target and nontarget trials
    epoch = best["epoch"] if select == "best" else epochs
    st = torch.load(ckpt_dir / f"ep{epoch:03d}.pt", map_location="cpu", weights_only=False)
    final = {"model": st["model"], "config": st["config"], "epoch": epoch, "val_eer": st["val_eer"],
             "speakers": st["speakers"], "num_classes": st["num_classes"]}
    with atomic_path(out / "final.pt") as tmp:
        torch.save(final, tmp)
    summary = {"final_epoch": epoch, "select": select, "val_eer": st["val_eer"], "best": best,
               "epochs": epochs, **provenance()}
    with atomic_path(out / "final.json") as tmp:
        tmp.write_text(json.dumps(summary, indent=2) + "\n")
    val = "" if math.isnan(st["val_eer"]) else f"; validation EER {st['val_eer']:.2f}%"
    log(f"final.pt = epoch {epoch} ({select}{val})")
    return summary


def load_final(path: str | os.PathLike, device: torch.device) -> nn.Module:
    """The embedding network of a ``final.pt`` (or of a full checkpoint), in eval mode on ``device``."""
    st = torch.load(path, map_location="cpu", weights_only=False)
    feat_dim = edata.FeatureConfig.from_dict(st["config"]["features"]).feat_dim
    model = build_model({"feat_dim": feat_dim, **st["config"]["model"]})
    model.load_state_dict(st["model"])
    return model.to(device).eval()
