"""A test-only callback: the training loss seen by later callbacks is NaN on one process."""

from __future__ import annotations

from typing import Any

import lightning as L
import torch


class NaNOnRank(L.Callback):
    """At ``step`` on process ``rank``, hand later callbacks a NaN loss (weights untouched)."""

    def __init__(self, rank: int = 1, step: int = 2) -> None:
        self.rank, self.step = rank, step

    def on_train_batch_end(self, trainer, pl_module, outputs: Any, batch, batch_idx) -> None:
        if trainer.global_rank == self.rank and trainer.global_step == self.step:
            outputs["loss"] = torch.tensor(float("nan"))
