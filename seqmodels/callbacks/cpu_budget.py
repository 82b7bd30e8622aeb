"""Stop training after a budget of CPU time: equal budgets for models on a shared machine."""

from __future__ import annotations

import time
from typing import Any

import lightning as L
from lightning.pytorch.utilities import rank_zero_info

from seqmodels.core.errors import ConfigError


class CPUTimeBudget(L.Callback):
    """Stop training once the process has used ``seconds`` of CPU time since ``fit`` began.

    ``trainer.max_time`` counts wall time, which other jobs on the machine stretch; CPU time
    (``time.process_time``: every thread of the process, validation included) counts only the
    work the run did, so models given the same budget on a busy machine get the same compute.
    With ``num_threads=1`` it equals the wall time the run would take on an idle core. The check
    runs after each training step, and stops within the epoch whatever ``trainer.min_epochs`` and
    ``min_steps`` say; under DDP the processes decide together (any one over its budget stops
    all). A resumed run starts a new budget. ``seconds=None`` sets no limit.
    """

    def __init__(self, seconds: float | None = None) -> None:
        if seconds is not None and not seconds > 0:
            raise ConfigError(
                f"callbacks.cpu_budget.seconds must be positive or null, not {seconds}"
            )
        self.seconds = seconds
        self._start = 0.0
        self._stopped = False

    def used(self) -> float:
        """CPU seconds the process has used since ``fit`` began."""
        return time.process_time() - self._start

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._start, self._stopped = time.process_time(), False

    def on_train_batch_end(self, trainer: L.Trainer, *_args: Any) -> None:
        if self.seconds is None:
            return
        over = trainer.strategy.reduce_boolean_decision(self.used() >= self.seconds, all=False)
        if not over:
            return
        # a budget is a limit, not early stopping: trainer.min_epochs (1 by default) and
        # min_steps would otherwise run on to the end of the epoch, far past the budget where
        # an epoch is long (the long-range tasks' 500 steps), also when another callback (early
        # stopping) asked to stop first
        trainer.fit_loop.min_epochs = 0
        trainer.fit_loop.epoch_loop.min_steps = None
        if not self._stopped:
            self._stopped = trainer.should_stop = True
            rank_zero_info(
                f"CPU budget of {self.seconds:g} s used at step {trainer.global_step}: stopping"
            )
