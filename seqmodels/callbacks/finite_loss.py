"""Stop training at the first NaN or infinite loss, before any checkpoint holds broken weights."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import lightning as L
import torch

from seqmodels.core.errors import NonFiniteLossError

NEVER = torch.iinfo(torch.int64).max  # "no bad step yet", so a min over processes finds one


class FiniteLoss(L.Callback):
    """Raise :class:`NonFiniteLossError`, naming the first bad step, when a training loss is
    NaN or inf on any process.

    Each step folds the loss into a flag on the loss's device (no synchronisation). The flag
    is read where reading is free or needed: every step on the CPU (the exact step stops the
    run), on a GPU at the steps Lightning logs ``train/loss`` (it syncs then anyway) and always
    before validation and at the end of the epoch, which is where checkpoints are written, so
    none is written after the loss broke. Under DDP every process takes the decision together
    (the strategy's boolean reduce): all stop, none waits in the next collective for a process
    that is gone. (Lightning's ``EarlyStopping(check_finite=True)`` looks only at the
    validation metric, once an epoch, after ``last.ckpt`` may hold the broken weights.)
    """

    def __init__(self) -> None:
        self.first_bad: torch.Tensor | None = None  # the first step with a bad loss, or NEVER
        self.bad_value: torch.Tensor | None = None  # that loss (nan, inf or -inf)

    def on_train_batch_end(
        self,
        trainer: L.Trainer,
        pl_module: L.LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
    ) -> None:
        loss = outputs.get("loss") if isinstance(outputs, Mapping) else outputs
        if not isinstance(loss, torch.Tensor):
            return
        if self.first_bad is None or self.first_bad.device != loss.device:
            self.first_bad = torch.full((), NEVER, dtype=torch.int64, device=loss.device)
            self.bad_value = torch.zeros((), device=loss.device)
        loss = loss.detach().float().sum()
        new = ~torch.isfinite(loss) & (self.first_bad == NEVER)
        self.first_bad = torch.where(new, trainer.global_step, self.first_bad)
        self.bad_value = torch.where(new, loss, self.bad_value)
        every = trainer.log_every_n_steps
        between_logs = every > 0 and trainer.global_step % every
        if loss.device.type == "cpu" or not between_logs:
            self.check(trainer, batch_idx)

    def on_validation_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.training:
            self.check(trainer)

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.check(trainer)

    def check(self, trainer: L.Trainer, batch_idx: int | None = None) -> None:
        """Read the flag (every process, at the same points) and stop all if any saw a bad loss."""
        if self.first_bad is None:
            return
        first_bad = trainer.strategy.reduce(self.first_bad.clone(), reduce_op="min")
        stop = trainer.strategy.reduce_boolean_decision(bool(first_bad < NEVER), all=False)
        if not stop:
            return
        step = int(first_bad)
        mine = bool(self.first_bad == first_bad)
        what = f"train/loss is {self.bad_value.item()}" if mine else "train/loss is not finite"
        where = "" if mine else " on another process"
        if batch_idx is not None and step == trainer.global_step:
            where += f" (epoch {trainer.current_epoch}, batch {batch_idx})"
        kept = ""
        if checkpoint := trainer.checkpoint_callback:
            paths = (getattr(checkpoint, k, "") for k in ("best_model_path", "last_model_path"))
            saved = list(dict.fromkeys(p for p in paths if p))
            kept = f"; checkpoints from before are kept: {', '.join(saved)}" if saved else ""
        raise NonFiniteLossError(
            f"{what} at step {step}{where}: training stopped{kept}. Lower "
            "task.module.optimizer.lr, keep trainer.gradient_clip_val set, or check the data."
        )
