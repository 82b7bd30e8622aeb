"""What every task shares: optimizer and scheduler from plain config, loss averaging, logging."""

from __future__ import annotations

import inspect
import warnings
from typing import Any

import lightning as L
import torch
from hydra.utils import get_class, instantiate
from lightning.pytorch.plugins.precision import MixedPrecision
from lightning.pytorch.utilities.warnings import PossibleUserWarning
from torch import nn
from torch.optim.lr_scheduler import LambdaLR
from torchmetrics import MeanMetric

# Re-exported: the layers every task builds live with the networks (seqmodels.nets).
from seqmodels.nets.parts import ENCODER_KEYS, build_embedding, build_encoder

__all__ = [
    "ENCODER_KEYS",
    "SequenceTask",
    "build_embedding",
    "build_encoder",
    "can_fuse",
    "resolve_fused",
    "decay_groups",
]

# Epoch-level val/test values come from torchmetrics objects, whose compute() already reduces
# their states over DDP processes; Lightning cannot tell and suggests sync_dist=True for each.
warnings.filterwarnings(
    "ignore", message=r".*self\.log\('(val|test)/.*sync_dist=True", category=PossibleUserWarning
)


def never_decayed(module: nn.Module) -> set[int]:
    """Ids of the parameters a layer asks to keep from weight decay (its ``no_weight_decay()``,
    e.g. a frozen pretrained embedding, whose rows must not move at all)."""
    return {
        id(p)
        for m in module.modules()
        if callable(getattr(m, "no_weight_decay", None))
        for p in m.no_weight_decay()
    }


def can_fuse(optimizer_cfg: dict[str, Any], params: list[nn.Parameter]) -> bool:
    """Whether the optimizer ``optimizer_cfg`` names runs fused here: one kernel per step for all
    parameters (torch's Adam, AdamW, SGD, Adagrad), which on the CPU measured makes AdamW's step
    about 5x faster, most of a step of a tagger with a large word vocabulary (docs/ner.md).
    Only with floating-point parameters, all on the CPU or all on CUDA, and without
    ``foreach``/``differentiable``."""
    target = get_class(optimizer_cfg["_target_"]) if "_target_" in optimizer_cfg else None
    if target is None or "fused" not in inspect.signature(target).parameters:
        return False
    if optimizer_cfg.get("foreach") or optimizer_cfg.get("differentiable"):
        return False  # torch takes neither together with fused
    devices = {p.device.type for p in params}
    return (
        len(devices) == 1
        and devices <= {"cpu", "cuda"}
        and all(p.is_floating_point() for p in params)
    )


def resolve_fused(
    optimizer_cfg: dict[str, Any], params: list[nn.Parameter], allowed: bool = True
) -> dict[str, Any]:
    """``optimizer_cfg`` with ``fused: null`` made ``True`` where :func:`can_fuse` (and
    ``allowed``), else left to the optimizer's own default (the key dropped: not every
    optimizer takes it)."""
    cfg = dict(optimizer_cfg)
    if "fused" in cfg and cfg["fused"] is None:
        if allowed and can_fuse(cfg, params):
            cfg["fused"] = True
        else:
            cfg.pop("fused")
    return cfg


def decay_groups(
    module: nn.Module, weight_decay: float, matrices_only: bool = True
) -> list[dict[str, Any]]:
    """Two parameter groups: weight matrices (decayed) and the rest (not decayed).

    Biases, norm scales and embedding tables get no weight decay, as in minGPT and most LM
    recipes: they set offsets and scales, and decaying them pulls rare tokens' rows to zero.
    ``matrices_only=False``: every parameter is decayed but those of :func:`never_decayed`.
    """
    embedding_params = {
        id(p) for m in module.modules() if isinstance(m, nn.Embedding) for p in m.parameters()
    }
    kept = never_decayed(module)
    decay, keep = [], []
    for param in module.parameters():
        if not param.requires_grad:
            continue
        is_matrix = param.ndim >= 2 and id(param) not in embedding_params
        decayed = is_matrix if matrices_only else True
        (decay if decayed and id(param) not in kept else keep).append(param)
    return [
        {"params": decay, "weight_decay": weight_decay},
        {"params": keep, "weight_decay": 0.0},
    ]


SCHEDULER_LISTS = ("base_lrs", "_last_lr", "min_lrs")  # a scheduler's values per group


def split_one_group(
    checkpoint: dict[str, Any], everything: list[nn.Parameter], groups: Any
) -> None:
    """A checkpoint whose optimizer had one group over all parameters (runs from before
    :func:`decay_groups` applied to frozen word vectors) split into this run's ``groups``, by
    parameter order, so it resumes: each parameter keeps its optimizer state, and takes its
    new group's settings (weight decay)."""
    states = checkpoint.get("optimizer_states") or []
    if not isinstance(groups, list) or len(states) != 1:
        return
    state = states[0]
    if len(state.get("param_groups", [])) != 1 or len(groups) == 1:
        return
    (old,) = state["param_groups"]
    if len(old["params"]) != len(everything):  # not the layout this knows: Lightning says
        return
    index = {id(p): i for i, p in zip(old["params"], everything, strict=True)}
    new = [
        {**old, **{k: v for k, v in g.items() if k != "params"}}
        | {"params": [index[id(p)] for p in g["params"]]}
        for g in groups
    ]
    kept = {i for group in new for i in group["params"]}  # frozen parameters have no group
    state["state"] = {i: s for i, s in state["state"].items() if i in kept}
    state["param_groups"] = new
    for scheduler in checkpoint.get("lr_schedulers") or []:
        for key in SCHEDULER_LISTS:
            if isinstance(scheduler.get(key), list) and len(scheduler[key]) == 1:
                scheduler[key] = scheduler[key] * len(new)


class SequenceTask(L.LightningModule):
    """Base LightningModule: a token-weighted mean loss per stage and config-built optimizers.

    ``optimizer`` and ``scheduler`` are plain dicts with a ``_target_`` (e.g.
    ``torch.optim.AdamW``); scheduler keys ``monitor``/``interval``/``frequency`` go to Lightning.
    Hyperparameters stay plain values, so checkpoints load with ``weights_only=True``.
    """

    def __init__(self) -> None:
        super().__init__()
        self.losses = nn.ModuleDict({stage: MeanMetric() for stage in ("val", "test")})

    def optimizer_params(self) -> Any:
        """What the optimizer is built on: two groups (see :func:`decay_groups`) or all
        parameters."""
        optimizer_cfg = dict(self.hparams.optimizer)
        weight_decay = optimizer_cfg.get("weight_decay", 0.0)
        # seqmodels' own key, not the optimizer's: decay weight matrices only (see decay_groups).
        if optimizer_cfg.get("decay_weights_only", False):
            return decay_groups(self, weight_decay)
        if weight_decay and never_decayed(self):  # e.g. frozen word vectors
            return decay_groups(self, weight_decay, matrices_only=False)
        return self.parameters()

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        if checkpoint.get("optimizer_states") and self.hparams.get("optimizer"):
            split_one_group(checkpoint, list(self.parameters()), self.optimizer_params())

    def configure_optimizers(self) -> dict[str, Any]:
        optimizer_cfg = dict(self.hparams.optimizer)
        optimizer_cfg.pop("decay_weights_only", None)
        # Lightning's mixed-precision plugin (bf16-mixed, 16-mixed) refuses to clip a fused
        # step's gradients (it would unscale them itself): fused only outside it
        plugin = getattr(self._trainer, "precision_plugin", None)
        amp = isinstance(plugin, MixedPrecision)
        optimizer_cfg = resolve_fused(optimizer_cfg, list(self.parameters()), not amp)
        # A partial, called on the groups: Hydra would turn a list of dicts into a ListConfig.
        optimizer = instantiate(optimizer_cfg, _partial_=True)(self.optimizer_params())
        scheduler_cfg = dict(self.hparams.get("scheduler") or {})
        lightning_keys = {
            k: scheduler_cfg.pop(k)
            for k in ("monitor", "interval", "frequency", "strict")
            if k in scheduler_cfg
        }
        if "monitor" in lightning_keys and self.trainer.limit_val_batches == 0:
            scheduler_cfg, lightning_keys = {}, {}  # no validation metric to step on
        # A run may end before its first validation (max_steps, max_time): then a schedule on
        # a validation metric skips its step with a warning instead of stopping the run.
        if "monitor" in lightning_keys:
            lightning_keys.setdefault("strict", False)
        if scheduler_cfg.get("total_steps", 0) is None:  # a schedule over the whole run
            scheduler_cfg["total_steps"] = int(self.trainer.estimated_stepping_batches)
        if scheduler_cfg:
            scheduler = instantiate(scheduler_cfg, optimizer=optimizer)
        else:  # a constant schedule, so the learning-rate monitor still logs `lr`
            scheduler = torch.optim.lr_scheduler.ConstantLR(optimizer, factor=1.0, total_iters=0)
        return {
            "optimizer": optimizer,
            "lr_scheduler": {"scheduler": scheduler, "name": "lr", **lightning_keys},
        }

    def log_loss(self, stage: str, loss: torch.Tensor, count: int) -> None:
        """Per-step ``train/loss``; exact token-weighted epoch means for val and test."""
        if stage == "train":
            self.log(
                "train/loss", loss, on_step=True, on_epoch=False, prog_bar=True, batch_size=count
            )
        else:
            self.losses[stage].update(loss.detach(), weight=count)

    def epoch_loss(self, stage: str) -> torch.Tensor:
        value = self.losses[stage].compute()
        self.losses[stage].reset()
        return value

    # A task implements ``_step`` (loss of a batch; updates val/test metrics) and ``_log_epoch``.
    def _step(self, batch: Any, stage: str) -> torch.Tensor:
        raise NotImplementedError

    def _log_epoch(self, stage: str) -> None:
        raise NotImplementedError

    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        return self._step(batch, "train")

    def validation_step(self, batch: Any, batch_idx: int) -> None:
        self._step(batch, "val")

    def test_step(self, batch: Any, batch_idx: int) -> None:
        self._step(batch, "test")

    def on_train_epoch_start(self) -> None:
        """An epoch-stepped closed-form schedule (a ``LambdaLR``, e.g. ``InverseDecay``) follows
        the trainer's epoch: a run stopped by ``max_steps`` mid-epoch resumes in the next epoch
        without the epoch-end step Lightning never took."""
        for config in self.trainer.lr_scheduler_configs:
            scheduler = config.scheduler
            aligned = scheduler.last_epoch == self.current_epoch
            if config.interval == "epoch" and isinstance(scheduler, LambdaLR) and not aligned:
                scheduler.last_epoch = self.current_epoch - 1
                with warnings.catch_warnings():  # "step() before optimizer.step()": on purpose
                    warnings.simplefilter("ignore", UserWarning)
                    scheduler.step()

    def on_validation_epoch_end(self) -> None:
        self._log_epoch("val")

    def on_test_epoch_end(self) -> None:
        self._log_epoch("test")
