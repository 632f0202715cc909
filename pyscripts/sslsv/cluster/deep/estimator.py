"""Deep information-maximisation clustering: one estimator for IMSAT, CIMC, CAMSAT and every ablation of
Table I of the CIMC paper, selected by loss weights (``conf/cluster/<name>.yaml``).

Per mini-batch (docs/algorithms.md §2-3)::

    L = vat_weight · R_VAT + im_weight · λ (H(Y|X) − μ H(Y))          (IMSAT)
      + mixup_weight · L_Mixup                                        (CIMC: VMT on logits)
      + supcon_weight · L_SupCon                                       (CIMC: SupCon, online pseudo-labels)
      + aug_weight · L_aug + symmetry_weight · L_symmetry              (CAMSAT, CIMC+)
      + info_nce_weight · L_InfoNCE                                    (CIMC++)
      + vicreg_inv_weight · MSE + vicreg_var_weight · var + vicreg_cov_weight · cov   (VICReg rows)

Each term is a row of :data:`~sslsv.cluster.deep.losses.TERMS` (its name, the parameter holding its
weight, the function computing it from the batch, whether it needs views), and a batch's loss is the sum
of weight × term over the rows whose weight is > 0. A new term is a function and a row there, and its
weight parameter in :class:`DeepIMClustering` (scikit-learn's one explicit parameter per setting).

The clean forward pass updates the batch-norm running averages; perturbed, mixed and augmented passes
normalise with the batch's statistics without updating them (IMSAT's code). Views for L_aug /
L_symmetry / InfoNCE / VICReg are the i-vectors of augmented audio when ``fit`` receives them
(``views_source: auto`` or ``audio``), otherwise i-vector-space augmentations
(:class:`~sslsv.cluster.deep.views.IvectorAugment`).

Training (docs/clustering.md, "Training schedule"): ``steps`` optimiser steps of Adam (lr 0.02, decayed
per step to 0.1 × lr), batches of min(10,240, N, max(256, N / 8)) vectors, each epoch a pass over a fresh
permutation (full batches), λ = 0.5, μ = 3.5; the head from N and C (``hidden: auto``, :mod:`.schedule`: a
linear head, and where the head rule allows also a hidden one, the two compared by the unsupervised
objective like restarts). The papers' own setting (SGD momentum 0.9, lr 0.01 × 0.996 per epoch, batch
10,240 capped at N, 150 epochs, 1200-1200) is ``steps: 0`` with ``conf/cluster/schedule/paper.yaml``, the
``<method>_paper`` configs. ``n_init`` runs from consecutive seeds keep the one with the lowest
unsupervised objective. A checkpoint (model, optimizer, epoch, random states, curve) is written atomically
after every epoch to ``checkpoint_dir/run<i>``; ``fit`` continues from it when every parameter but the
device, logging and evaluation options is the same. True labels, when given as ``eval_labels``, are only
used to add the supervised metrics (``eval_metrics``: ACC, AMI, NMI, ..., purity) to the per-epoch curve,
never for training or model selection: the model of the last epoch is the result. On the CPU the training
runs with ``num_threads`` torch threads (1) whatever the process' setting, because the float32 sums of a
matrix product depend on how it is split between threads, and a run must give the same labels on any
machine.

Design choices (docs/algorithms.md [I] items), each a parameter:

- ``out_init_scale`` 1.0, not IMSAT's 1e-4: IMSAT's near-zero output layer starts at the uniform
  prediction, a stationary point of every IMSAT term, which Adam leaves quickly but the paper's SGD
  (lr 0.01) does not: on the demo i-vectors the conditional entropy stayed at log C for all 150 epochs
  (ACC 0.15). Set ``out_init_scale: 1.0e-4`` for IMSAT's initialisation.
- ``supcon_min_confidence`` 0.9: SupCon uses only samples whose prediction is that confident. At the
  papers' scale (C = 5,000-10,000 clusters, batches of 10,240) almost every pseudo-label is a singleton
  in a batch until clusters form, so SupCon only acts on emerging clusters; with few clusters per batch
  it acts on random pseudo-labels from the first step and collapses the clustering (8 blobs: ACC 0.18
  without the gate, 0.90 with it). 0 gives the literal loss.
- ``vat_xi`` is relative: the power-iteration step is ``vat_xi`` × the median k-th neighbour distance
  (IMSAT's ξ = 10 was tuned to MNIST pixels, far too large for unit-norm i-vectors).
"""

from __future__ import annotations

import copy
import hashlib
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from sklearn.base import BaseEstimator, ClusterMixin

from ...device import resolve_device
from ...tables import DataError, atomic_path
from ..registry import register
from . import losses
from .knn import kth_neighbor_distance
from .model import ClusterMLP, frozen_bn_stats, parse_hidden
from .schedule import Schedule, auto_heads, auto_vat_k, plan
from .views import IvectorAugment

log = logging.getLogger(__name__)
_OBJECTIVE_SEED = 20261204     # the fixed draws of the restart criterion (any constant; shared by all runs)


@dataclass
class _Data:
    """What every training run and the objective read: inputs, neighbour distances, views, VAT ξ."""

    x: torch.Tensor
    delta: torch.Tensor
    views: torch.Tensor | None
    xi: float
    augment: IvectorAugment


@register("deep_im")
class DeepIMClustering(ClusterMixin, BaseEstimator):
    """IMSAT-family clustering network (see the module docstring for the objective)."""

    def __init__(self, n_clusters: int = 100, hidden: str = "auto", hidden_init_scale: float = 0.1,
                 out_init_scale: float = 1.0,
                 lam: float = 0.5, mu: float = 3.5, im_weight: float = 1.0,
                 vat_weight: float = 1.0, vat_eps: float = 0.25, vat_xi: float = 0.1, vat_k: int | str = 10,
                 vat_power: int = 1, vat_knn_off_by_one: bool = False,
                 mixup_weight: float = 0.0, mixup_alpha: float = 1.0,
                 supcon_weight: float = 0.0, supcon_temperature: float = 0.07,
                 supcon_min_confidence: float = 0.9,
                 aug_weight: float = 0.0, symmetry_weight: float = 0.0, symmetry_include_clean: bool = False,
                 info_nce_weight: float = 0.0, info_nce_temperature: float = 0.1,
                 vicreg_inv_weight: float = 0.0, vicreg_var_weight: float = 0.0,
                 vicreg_cov_weight: float = 0.0, vicreg_gamma: float = 1.0,
                 views_source: str = "auto", n_views: int = 2, view_augment: str = "noise,mask,scale",
                 view_noise_scale: float = 0.25, view_mask_prob: float = 0.1,
                 view_scale_range: float = 0.1,
                 optimizer: str = "adam", lr: float = 0.02, momentum: float = 0.9, lr_decay: float = 0.996,
                 lr_final: float = 0.1, weight_decay: float = 0.0, grad_clip: float = 0.0,
                 steps: int = 10000, epochs: int = 150, batch_size: int = 10240, min_batch_size: int = 256,
                 batches_per_epoch: int = 8, n_init: int = 1, num_threads: int = 1,
                 eval_metrics: str = "acc,ami,nmi,completeness,homogeneity,fmi,purity",
                 device: str = "auto", random_state: int = 0,
                 checkpoint_dir: str | None = None, verbose: bool = True) -> None:
        self.n_clusters = n_clusters
        self.hidden = hidden
        self.hidden_init_scale = hidden_init_scale
        self.out_init_scale = out_init_scale
        self.lam = lam
        self.mu = mu
        self.im_weight = im_weight
        self.vat_weight = vat_weight
        self.vat_eps = vat_eps
        self.vat_xi = vat_xi
        self.vat_k = vat_k
        self.vat_power = vat_power
        self.vat_knn_off_by_one = vat_knn_off_by_one
        self.mixup_weight = mixup_weight
        self.mixup_alpha = mixup_alpha
        self.supcon_weight = supcon_weight
        self.supcon_temperature = supcon_temperature
        self.supcon_min_confidence = supcon_min_confidence
        self.aug_weight = aug_weight
        self.symmetry_weight = symmetry_weight
        self.symmetry_include_clean = symmetry_include_clean
        self.info_nce_weight = info_nce_weight
        self.info_nce_temperature = info_nce_temperature
        self.vicreg_inv_weight = vicreg_inv_weight
        self.vicreg_var_weight = vicreg_var_weight
        self.vicreg_cov_weight = vicreg_cov_weight
        self.vicreg_gamma = vicreg_gamma
        self.views_source = views_source
        self.n_views = n_views
        self.view_augment = view_augment
        self.view_noise_scale = view_noise_scale
        self.view_mask_prob = view_mask_prob
        self.view_scale_range = view_scale_range
        self.optimizer = optimizer
        self.lr = lr
        self.momentum = momentum
        self.lr_decay = lr_decay
        self.lr_final = lr_final
        self.weight_decay = weight_decay
        self.grad_clip = grad_clip
        self.steps = steps
        self.epochs = epochs
        self.batch_size = batch_size
        self.min_batch_size = min_batch_size
        self.batches_per_epoch = batches_per_epoch
        self.n_init = n_init
        self.num_threads = num_threads
        self.eval_metrics = eval_metrics
        self.device = device
        self.random_state = random_state
        self.checkpoint_dir = checkpoint_dir
        self.verbose = verbose

    # ------------------------------------------------------------------ configuration checks

    def _uses_views(self) -> bool:
        return any(getattr(self, t.weight) > 0 for t in losses.TERMS if t.views)

    def _check(self) -> None:
        if self.n_clusters < 2:
            raise DataError(f"n_clusters must be at least 2, got {self.n_clusters}")
        if self.views_source not in ("auto", "audio", "ivector"):
            raise DataError(f"views_source must be auto, audio or ivector, got {self.views_source!r}")
        if self.optimizer not in ("sgd", "adam"):
            raise DataError(f"optimizer must be sgd or adam, got {self.optimizer!r}")
        if self.n_init < 1 or self.num_threads < 0:
            raise DataError(f"n_init must be >= 1 and num_threads >= 0 "
                            f"(got {self.n_init}, {self.num_threads})")
        if str(self.vat_k) != "auto" and int(self.vat_k) < 1:
            raise DataError(f"vat_k must be 'auto' or >= 1, got {self.vat_k!r}")
        if str(self.hidden) != "auto":
            parse_hidden(self.hidden)
        self.schedule(10_000)            # checks the schedule parameters
        weights = [getattr(self, w) for w in dict.fromkeys(t.weight for t in losses.TERMS)]
        if any(w < 0 for w in weights) or not any(w > 0 for w in weights):
            raise DataError("loss weights must be >= 0 with at least one > 0")

    # ------------------------------------------------------------------ fit

    def schedule(self, n: int) -> Schedule:
        """The training schedule for N vectors (batch, epochs, steps, learning rates)."""
        return plan(n, steps=int(self.steps), epochs=int(self.epochs), batch_size=int(self.batch_size),
                    min_batch_size=int(self.min_batch_size), batches_per_epoch=int(self.batches_per_epoch),
                    lr=float(self.lr), lr_decay=float(self.lr_decay), lr_final=float(self.lr_final))

    def heads(self, n: int) -> list[str]:
        """The heads trained for N vectors, as hidden widths ("" linear, "512", "1200-1200"): ``hidden``
        as given, or the candidates of the head rule for ``auto`` (:func:`.schedule.auto_heads`)."""
        if str(self.hidden) != "auto":
            return ["-".join(map(str, parse_hidden(self.hidden)))]
        return list(auto_heads(n, self.n_clusters))

    def neighbour_k(self, n: int) -> int:
        """The neighbour rank k of the VAT radius for N vectors (``vat_k`` or the ``auto`` rule)."""
        k = auto_vat_k(n, self.n_clusters) if str(self.vat_k) == "auto" else int(self.vat_k)
        return min(k, n - 1 - int(self.vat_knn_off_by_one))

    def fit(self, X: np.ndarray, y: Any = None, *, views: np.ndarray | None = None,
            eval_labels: Any = None) -> DeepIMClustering:
        """Train on ``X`` (N, d), already normalised. ``y`` is ignored (unsupervised). ``views``
        (V, N, d): augmented copies of every row (CAMSAT's views from augmented audio). ``eval_labels``:
        true labels used only for the evaluation columns of the curve.

        With ``n_init`` > 1 the network is trained from ``n_init`` seeds (``random_state`` + i), for each
        head of :meth:`heads`, and the run with the lowest unsupervised objective (:meth:`objective`) is
        kept, as k-means keeps the run of lowest inertia; the true labels play no part in the choice."""
        self._check()
        X = np.ascontiguousarray(X, dtype=np.float32)
        n, d = X.shape
        if n < 2:
            raise DataError("need at least 2 vectors to cluster")
        sched = self.schedule(n)
        dev = resolve_device(self.device)
        use_audio_views = self._uses_views() and views is not None and self.views_source in ("auto", "audio")
        if self._uses_views() and self.views_source == "audio" and views is None:
            raise DataError("views_source is 'audio' but no augmented vectors were given")
        if views is not None and (views.ndim != 3 or views.shape[1:] != X.shape):
            raise DataError(f"views must be (V, {n}, {d}), got {views.shape}")
        self.views_used_ = ("audio" if use_audio_views else "ivector") if self._uses_views() else "none"
        self.schedule_ = sched
        heads = self.heads(n)
        self.vat_k_ = self.neighbour_k(n)
        shown = " or ".join(f"{d}-{h or 'linear'}-{self.n_clusters}" for h in heads)
        self._progress(f"{n} vectors, {self.n_clusters} clusters: head {shown}, "
                       f"{sched.steps} steps of batch {sched.batch_size} ({sched.epochs} epochs), "
                       f"{self.optimizer} lr {sched.lr:g}, VAT k {self.vat_k_}, "
                       f"{self.n_init * len(heads)} run(s)")

        ckpt_dir = Path(self.checkpoint_dir) if self.checkpoint_dir else None
        threads = torch.get_num_threads()
        if dev.type == "cpu" and self.num_threads > 0:
            torch.set_num_threads(int(self.num_threads))
        try:
            delta = self._neighbour_distances(X, dev, ckpt_dir)
            self.knn_distance_median_ = float(np.median(delta))
            Xt = torch.from_numpy(X).to(dev)
            Vt = (torch.from_numpy(np.ascontiguousarray(views, dtype=np.float32)).to(dev) if use_audio_views
                  else None)
            dt = torch.from_numpy(delta.astype(np.float32)).to(dev)
            data = _Data(Xt, dt, Vt, self.vat_xi * self.knn_distance_median_, self._augment(X))
            runs = []
            plan_ = [(h, int(self.random_state) + s) for h in heads for s in range(int(self.n_init))]
            for i, (head, seed) in enumerate(plan_):
                run_dir = ckpt_dir / f"run{i}" if ckpt_dir is not None else None
                params = dict(self.get_params(), random_state=seed)
                if len(heads) > 1:
                    params["hidden"] = head or "linear"
                fingerprint = _fingerprint(X, params, views if use_audio_views else None)
                model, curve = self._train(data, sched, head, seed, run_dir, fingerprint, eval_labels, i,
                                           len(plan_))
                objective = self.objective(model, data, sched)
                runs.append({"head": head or "linear", "seed": seed, "objective": objective, "curve": curve,
                             "model": model, "num_clusters": curve[-1]["num_clusters"]})
                if len(plan_) > 1:
                    self._progress(f"run {i + 1}/{len(plan_)} (head {head or 'linear'}, seed {seed}): "
                                   f"objective {objective:.5f}, {curve[-1]['num_clusters']} clusters")
        finally:
            torch.set_num_threads(threads)
        best = min(range(len(runs)), key=lambda i: (runs[i]["objective"], i))
        self.runs_ = [{k: r[k] for k in ("head", "seed", "objective", "num_clusters")} for r in runs]
        self.best_run_ = best
        self.hidden_ = runs[best]["head"]
        model = runs[best]["model"]
        self.model_ = model.eval()
        self.device_ = dev
        self.curve_ = runs[best]["curve"]
        self.objective_ = runs[best]["objective"]
        self.labels_ = self._predict_t(model, data.x)
        self.n_features_in_ = d
        return self

    def training_summary(self) -> dict[str, Any]:
        """What the fit resolved (the kept head, schedule, VAT k) and every run's head, seed and
        objective, for ``metrics.json``."""
        s = self.schedule_
        return {"head": self.hidden_, "steps": s.steps, "epochs": s.epochs, "batch_size": s.batch_size,
                "batches_per_epoch": s.batches_per_epoch, "vat_k": self.vat_k_,
                "runs": self.runs_, "best_run": self.best_run_}

    def _augment(self, X: np.ndarray) -> IvectorAugment:
        return IvectorAugment(types=[t for t in self.view_augment.split(",") if t],
                              noise_scale=self.view_noise_scale, mask_prob=self.view_mask_prob,
                              scale_range=self.view_scale_range,
                              renormalize=bool(np.allclose(np.linalg.norm(X[:100], axis=1), 1, atol=1e-3)))

    def _train(self, data: _Data, sched: Schedule, head: str, seed: int, ckpt_dir: Path | None,
               fingerprint: str, eval_labels: Any, run: int, n_runs: int
               ) -> tuple[torch.nn.Module, list[dict[str, float]]]:
        """One training run of the head ``head`` (hidden widths, "" linear) from ``seed``; resumes from
        (and checkpoints to) ``ckpt_dir/last.pt``."""
        dev = data.x.device
        n, d = data.x.shape
        torch.manual_seed(seed)
        gen_cpu = torch.Generator().manual_seed(seed)
        gen_dev = torch.Generator(device=dev).manual_seed(seed + 1)
        model = ClusterMLP(d, self.n_clusters, parse_hidden(head), self.hidden_init_scale,
                           self.out_init_scale).to(dev)
        if self.optimizer == "sgd":
            opt: torch.optim.Optimizer = torch.optim.SGD(
                model.parameters(), lr=sched.lr, momentum=self.momentum, weight_decay=self.weight_decay)
        else:
            opt = torch.optim.Adam(model.parameters(), lr=sched.lr, weight_decay=self.weight_decay)

        curve: list[dict[str, float]] = []
        start = 0
        ckpt = ckpt_dir / "last.pt" if ckpt_dir is not None else None
        state = torch.load(ckpt, map_location=dev, weights_only=False) if ckpt and ckpt.is_file() else None
        if state is not None and state["fingerprint"] != fingerprint:
            self._progress(f"{ckpt} is a checkpoint of other data or options; starting afresh")
            state = None
        if state is not None:
            model.load_state_dict(state["model"])
            opt.load_state_dict(state["optimizer"])
            gen_cpu.set_state(state["gen_cpu"])
            gen_dev.set_state(state["gen_dev"])
            curve = state["curve"]
            start = state["epoch"]
            if start < sched.epochs:
                self._progress(f"resuming from {ckpt} after epoch {start} of {sched.epochs}")

        bs = sched.batch_size
        every = sched.row_every
        n_rows = -(-sched.epochs // every)
        term_names = [t.name for t in losses.TERMS]
        sums = dict.fromkeys(("total", *term_names), 0.0)
        done = 0
        t0 = time.time()
        for epoch in range(start, sched.epochs):
            first = epoch * sched.batches_per_epoch
            n_batches = min(sched.batches_per_epoch, sched.steps - first)
            model.train()
            perm = torch.randperm(n, generator=gen_cpu).to(dev)
            for b in range(n_batches):
                lr = sched.lr_at(first + b)
                for g in opt.param_groups:
                    g["lr"] = lr
                idx = perm[b * bs:(b + 1) * bs]
                loss, terms = self._batch_loss(model, data.x[idx], data.delta[idx], data.xi,
                                               self._views(data, idx, gen_cpu, gen_dev), gen_dev)
                if not torch.isfinite(loss):
                    raise FloatingPointError(f"epoch {epoch + 1}: loss became {loss.item()} ({terms})")
                opt.zero_grad(set_to_none=True)
                loss.backward()
                if self.grad_clip > 0:
                    torch.nn.utils.clip_grad_norm_(model.parameters(), self.grad_clip)
                opt.step()
                sums["total"] += loss.item()
                for k, v in terms.items():
                    sums[k] += v
            done += n_batches
            if (epoch + 1) % every and epoch + 1 < sched.epochs:
                continue
            # A curve row (and a checkpoint) every `every` epochs: about 150 per run, whatever the epochs.
            row: dict[str, float] = {"epoch": epoch + 1, "step": first + n_batches, "lr": lr}
            row.update({k: v / done for k, v in sums.items()})
            labels = self._predict_t(model, data.x)
            row["num_clusters"] = int(np.unique(labels).size)
            if eval_labels is not None and self.eval_metrics:
                from ..metrics import clustering_metrics

                names = [m for m in self.eval_metrics.split(",") if m]
                row.update({k: v for k, v in clustering_metrics(labels, eval_labels, names=names).items()
                            if k in names})
            row["seconds"] = time.time() - t0
            curve.append(row)
            if ckpt is not None:
                ckpt.parent.mkdir(parents=True, exist_ok=True)
                with atomic_path(ckpt) as tmp:
                    torch.save({"model": model.state_dict(), "optimizer": opt.state_dict(),
                                "gen_cpu": gen_cpu.get_state(), "gen_dev": gen_dev.get_state().cpu(),
                                "epoch": epoch + 1, "curve": curve, "fingerprint": fingerprint}, tmp)
            if self._log_epoch(-(-(epoch + 1) // every), n_rows):
                self._progress(_fmt_row(row, term_names, sched.epochs, run, n_runs))
            sums = dict.fromkeys(("total", *term_names), 0.0)
            done = 0
            t0 = time.time()
        return model, curve

    def _views(self, data: _Data, idx: torch.Tensor, gen_cpu: torch.Generator, gen_dev: torch.Generator
               ) -> list[torch.Tensor] | None:
        """The augmented views of the batch ``idx`` (None when no term uses views)."""
        if not self._uses_views():
            return None
        if data.views is not None:
            pick = torch.randperm(data.views.shape[0], generator=gen_cpu)[:self.n_views].to(idx.device)
            return [data.views[v][idx] for v in pick]
        return data.augment.views(data.x[idx], data.delta[idx], self.n_views, gen_dev)

    def objective(self, model: torch.nn.Module, data: _Data, sched: Schedule) -> float:
        """The training loss on the whole data set, the criterion that picks among restarts: the mean of
        the per-batch objective over one pass in batches of the training size, with the batch order and
        every random draw (VAT directions, mixup, views) fixed by one seed shared by all runs, batch norm
        normalising with batch statistics without updating its averages, and no parameter update."""
        n = len(data.x)
        gen_cpu = torch.Generator().manual_seed(_OBJECTIVE_SEED)
        gen_dev = torch.Generator(device=data.x.device).manual_seed(_OBJECTIVE_SEED)
        perm = torch.randperm(n, generator=gen_cpu).to(data.x.device)
        bs = sched.batch_size
        total = 0.0
        model.train()
        with frozen_bn_stats(model):
            for b in range(max(1, n // bs)):
                idx = perm[b * bs:(b + 1) * bs]
                loss, _ = self._batch_loss(model, data.x[idx], data.delta[idx], data.xi,
                                           self._views(data, idx, gen_cpu, gen_dev), gen_dev)
                total += float(loss.detach())
        model.zero_grad(set_to_none=True)
        model.eval()
        return total / max(1, n // bs)

    def _log_epoch(self, row: int, rows: int) -> bool:
        """Whether curve row ``row`` (1-based, of ``rows``) is printed: about 50 lines per run."""
        every = max(1, rows // 50)
        return row == 1 or row == rows or row % every == 0

    def _neighbour_distances(self, X: np.ndarray, dev: torch.device, ckpt_dir: Path | None) -> np.ndarray:
        need = self.vat_weight > 0 or (self._uses_views() and "noise" in self.view_augment)
        if not need:
            return np.ones(len(X), dtype=np.float64)
        k = self.vat_k_
        cache = (ckpt_dir / f"knn{k}{'_imsat' if self.vat_knn_off_by_one else ''}.npy") if ckpt_dir else None
        if cache is not None:
            cache.parent.mkdir(parents=True, exist_ok=True)
        return np.asarray(kth_neighbor_distance(X, k=k, include_self_offset=self.vat_knn_off_by_one,
                                                device=str(dev), cache=cache), dtype=np.float64)

    def _batch_loss(self, model: torch.nn.Module, x: torch.Tensor, delta: torch.Tensor, xi: float,
                    xviews: list[torch.Tensor] | None, gen: torch.Generator
                    ) -> tuple[torch.Tensor, dict[str, float]]:
        """The objective on one batch (:func:`losses.total_loss` over the rows of :data:`losses.TERMS`) and
        the value of each term."""
        logits = model(x)                 # clean pass: updates the BN running averages
        batch = losses.Batch(self, model, x, delta, xi, xviews, gen, logits)
        with frozen_bn_stats(model):      # every other pass normalises without updating them
            return losses.total_loss(batch)

    # ------------------------------------------------------------------ inference

    @torch.no_grad()
    def _logits_t(self, model: torch.nn.Module, Xt: torch.Tensor, batch: int = 65536) -> torch.Tensor:
        was = model.training
        model.eval()
        out = torch.cat([model(Xt[i:i + batch]) for i in range(0, len(Xt), batch)])
        model.train(was)
        return out

    def _predict_t(self, model: torch.nn.Module, Xt: torch.Tensor) -> np.ndarray:
        return self._logits_t(model, Xt).argmax(dim=1).cpu().numpy().astype(np.int64)

    def _as_tensor(self, X: np.ndarray) -> torch.Tensor:
        if not hasattr(self, "model_"):
            raise RuntimeError("call fit first")
        X = np.ascontiguousarray(X, dtype=np.float32)
        if X.ndim != 2 or X.shape[1] != self.n_features_in_:
            raise DataError(f"expected (N, {self.n_features_in_}) vectors, got {X.shape}")
        return torch.from_numpy(X).to(self.device_)

    def predict(self, X: np.ndarray) -> np.ndarray:
        """Cluster index (argmax of the network, batch norm in inference mode) of every row."""
        return self._predict_t(self.model_, self._as_tensor(X))

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        """Cluster posteriors p(y|x), (N, n_clusters)."""
        return torch.softmax(self._logits_t(self.model_, self._as_tensor(X)), dim=1).cpu().numpy()

    def _progress(self, msg: str) -> None:
        if self.verbose:
            log.info(f"deep_im: {msg}")


def _fingerprint(X: np.ndarray, params: dict[str, Any], views: np.ndarray | None) -> str:
    """Identity of the data and options of a run, so a checkpoint is only resumed by the same run."""
    h = hashlib.sha1()
    h.update(str(X.shape).encode())
    h.update(np.ascontiguousarray(X[:: max(1, len(X) // 4096)]).tobytes())
    if views is not None:
        h.update(np.ascontiguousarray(views[:, :: max(1, views.shape[1] // 1024)]).tobytes())
    p = copy.deepcopy(params)
    for k in ("checkpoint_dir", "verbose", "device", "eval_metrics"):
        p.pop(k, None)
    h.update(repr(sorted(p.items())).encode())
    return h.hexdigest()


def _fmt_row(row: dict[str, float], names: list[str], epochs: int, run: int = 0, n_init: int = 1) -> str:
    parts = ([f"run {run + 1}/{n_init}"] if n_init > 1 else []) + [
        f"epoch {int(row['epoch'])}/{epochs}", f"step {int(row['step'])}", f"loss {row['total']:.4f}"]
    parts += [f"{k} {row[k]:.4f}" for k in names if row.get(k)]
    parts.append(f"clusters {row['num_clusters']}")
    parts += [f"{k} {row[k]:.3f}" for k in ("acc", "nmi", "ami") if k in row]
    parts.append(f"{row['seconds']:.1f}s")
    return " ".join(parts)

