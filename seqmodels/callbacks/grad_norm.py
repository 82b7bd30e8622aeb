"""Log gradient norms before clipping, as ``grad_norm/total`` and ``grad_norm/<parameter>``."""

from __future__ import annotations

import lightning as L
from lightning.pytorch.utilities import grad_norm
from torch.optim import Optimizer

from seqmodels.core.errors import ConfigError


class GradNormLogger(L.Callback):
    """Every ``every_n_steps`` optimizer steps, log the 2-norm of each gradient and their total.

    Runs in ``on_before_optimizer_step``, which Lightning calls before gradient clipping, so
    the numbers are what the loss produced, not what the clip let through. The values go to the
    loggers at the step they were measured only (see ``send``).
    """

    def __init__(self, every_n_steps: int = 50, norm_type: float = 2.0, per_parameter: bool = True):
        if every_n_steps < 1:
            raise ConfigError(
                f"callbacks.grad_norm.every_n_steps must be >= 1, got {every_n_steps}"
            )
        self.every_n_steps, self.norm_type, self.per_parameter = (
            every_n_steps,
            norm_type,
            per_parameter,
        )

    def on_before_optimizer_step(
        self, trainer: L.Trainer, pl_module: L.LightningModule, optimizer: Optimizer
    ) -> None:
        if trainer.global_step % self.every_n_steps:
            return
        norms = grad_norm(pl_module, norm_type=self.norm_type)
        if not norms:  # no parameter has a gradient this step
            return
        prefix = f"grad_{float(self.norm_type)}_norm"
        renamed = {"grad_norm/total": norms.pop(f"{prefix}_total")}
        if self.per_parameter:
            renamed |= {f"grad_norm/{k.removeprefix(prefix + '/')}": v for k, v in norms.items()}
        self.send(trainer, {k: float(v) for k, v in renamed.items()})

    @staticmethod
    def send(trainer: L.Trainer, norms: dict[str, float]) -> None:
        """Straight to the loggers, at this step. ``LightningModule.log`` (which Lightning also
        puts on every callback as ``self.log``) keeps a value and re-emits it at each logging step
        until the next measurement: flat stretches that were never measured. Lightning's loggers
        write on global rank 0 only, where DDP has already all-reduced the gradients."""
        for logger in trainer.loggers:
            logger.log_metrics(norms, step=trainer.global_step)
