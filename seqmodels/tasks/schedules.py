"""Learning-rate schedules that Hydra can build from plain values (no lambdas in configs)."""

from __future__ import annotations

import logging
import math

from torch.optim import Optimizer
from torch.optim.lr_scheduler import LambdaLR

from seqmodels.core.errors import ConfigError

log = logging.getLogger(__name__)


class WarmupCosine(LambdaLR):
    """Linear warm-up over ``warmup_steps``, then a cosine decay to ``min_lr_ratio`` x the peak.

    Step it every optimizer step (``interval: step``). ``total_steps=None`` is filled in by the
    task with Lightning's estimate of the run's optimizer steps (``max_epochs`` x batches).
    """

    def __init__(
        self,
        optimizer: Optimizer,
        total_steps: int,
        warmup_steps: int = 0,
        min_lr_ratio: float = 0.0,
        last_epoch: int = -1,
    ) -> None:
        if total_steps is None or total_steps < 1 or warmup_steps < 0:
            raise ConfigError(
                "task.module.scheduler needs total_steps >= 1 and warmup_steps >= 0, got "
                f"warmup_steps={warmup_steps}, total_steps={total_steps}"
            )
        if warmup_steps >= total_steps:  # a short run (max_steps, limit_train_batches)
            log.warning(
                "scheduler warmup_steps=%d >= the run's %d steps: warming up over %d",
                warmup_steps,
                total_steps,
                total_steps // 2,
            )
            warmup_steps = total_steps // 2
        if not 0.0 <= min_lr_ratio <= 1.0:
            raise ConfigError(f"scheduler min_lr_ratio must be in [0, 1], got {min_lr_ratio}")
        self.total_steps, self.warmup_steps, self.min_lr_ratio = (
            total_steps,
            warmup_steps,
            min_lr_ratio,
        )
        super().__init__(optimizer, self.factor, last_epoch)

    def factor(self, step: int) -> float:
        if step < self.warmup_steps:
            return (step + 1) / self.warmup_steps
        span = max(1, self.total_steps - self.warmup_steps)
        progress = min(1.0, (step - self.warmup_steps) / span)
        cosine = 0.5 * (1.0 + math.cos(math.pi * progress))
        return self.min_lr_ratio + (1.0 - self.min_lr_ratio) * cosine


class InverseDecay(LambdaLR):
    """``lr / (1 + decay * epoch)``: NCRF++'s and Ma and Hovy 2016's SGD schedule.

    Step it once per epoch (``interval: epoch``); ``decay=0.05`` halves the rate by epoch 20.
    """

    def __init__(self, optimizer: Optimizer, decay: float = 0.05, last_epoch: int = -1) -> None:
        if not (math.isfinite(decay) and decay >= 0.0):
            raise ConfigError(f"task.module.scheduler.decay must be a number >= 0, got {decay}")
        self.decay = decay
        super().__init__(optimizer, self.factor, last_epoch)

    def factor(self, epoch: int) -> float:
        return 1.0 / (1.0 + self.decay * epoch)
