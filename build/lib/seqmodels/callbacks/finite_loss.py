"""Stop training at the first NaN or infinite loss, before any checkpoint holds broken weights."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import lightning as L
import torch

from seqmodels.errors import NonFiniteLossError


class FiniteLoss(L.Callback):
    """Raise :class:`NonFiniteLossError`, naming the step, when a training loss is NaN or inf.

    Runs in ``on_train_batch_end``, before validation and before Lightning's checkpoint
    callbacks (which it always calls last), so no checkpoint is written after the loss broke:
    the best and last checkpoints already on disk are from finite steps and stay valid.
    (Lightning's ``EarlyStopping(check_finite=True)`` only looks at the validation metric, once
    an epoch, after ``last.ckpt`` may already hold the broken weights.)
    """

    def on_train_batch_end(
        self,
        trainer: L.Trainer,
        pl_module: L.LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
    ) -> None:
        loss = outputs.get("loss") if isinstance(outputs, Mapping) else outputs
        if not isinstance(loss, torch.Tensor) or bool(torch.isfinite(loss).all()):
            return
        kept = ""
        if checkpoint := trainer.checkpoint_callback:
            paths = (getattr(checkpoint, k, "") for k in ("best_model_path", "last_model_path"))
            saved = list(dict.fromkeys(p for p in paths if p))
            kept = f"; checkpoints from before are kept: {', '.join(saved)}" if saved else ""
        raise NonFiniteLossError(
            f"train/loss is {loss.item()} at step {trainer.global_step} (epoch "
            f"{trainer.current_epoch}, batch {batch_idx}): training stopped{kept}. Lower "
            "task.module.optimizer.lr, keep trainer.gradient_clip_val set, or check the data."
        )
