"""Gate statistics of LSTMs and GRUs, recomputed exactly from each layer's own weights."""

from __future__ import annotations

from typing import Any

import lightning as L
import torch
from lightning.pytorch.loggers import TensorBoardLogger
from torch import Tensor

from seqmodels.callbacks.grad_flow import first_rows, task_problem
from seqmodels.core.errors import ConfigError
from seqmodels.layers.gates import GATE_NAMES, cell_kind, unroll

SATURATED = (0.05, 0.95)  # a sigmoid gate below / above these is (nearly) shut / open


def gate_statistics(gates: dict[str, Tensor], mask: Tensor) -> dict[str, Tensor]:
    """Per gate over the valid steps (``mask [B, T]``): ``<gate>_mean`` and, for the sigmoid
    gates, ``<gate>_saturated`` (share of values < 0.05 or > 0.95); the tanh candidates
    (LSTM ``cell``, GRU ``new``) as ``<gate>_abs_mean``, the mean magnitude."""
    stats = {}
    for name, values in gates.items():
        valid = values[mask]
        if name in ("cell", "new"):
            stats[f"{name}_abs_mean"] = valid.abs().mean()
        else:
            stats[f"{name}_mean"] = valid.mean()
            low, high = SATURATED
            stats[f"{name}_saturated"] = ((valid < low) | (valid > high)).float().mean()
    return stats


class GateStatsLogger(L.Callback):
    """Once per validation (rank 0 only, not in the sanity check), on the first validation
    batch (its first ``max_batch`` sequences): replay the encoder with its own weights
    (:func:`seqmodels.layers.gates.unroll`) and log, per layer and direction,
    ``gates/l<k>[_reverse]/<gate>_mean``, ``..._saturated``, ``..._abs_mean`` and (TensorBoard)
    a histogram ``gates/l<k>[_reverse]/<gate>`` of every value.

    Gates: ``input``, ``forget``, ``cell`` (the candidate g), ``output`` for LSTMs (nn.LSTM,
    HandLSTM); ``reset``, ``update``, ``new`` for the GRU. A plain RNN has none: nothing is
    logged.
    """

    def __init__(self, max_batch: int = 32) -> None:
        if not isinstance(max_batch, int) or max_batch < 1:
            raise ConfigError(
                f"callbacks.gate_stats.max_batch must be a positive integer, got {max_batch!r}"
            )
        self.max_batch = max_batch

    def on_validation_batch_start(
        self,
        trainer: L.Trainer,
        pl_module: L.LightningModule,
        batch: Any,
        batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:
        if batch_idx or dataloader_idx or trainer.sanity_checking or not trainer.is_global_zero:
            return
        encoder = pl_module.encoder
        replays_itself = hasattr(encoder, "unroll")  # minGRU/minLSTM (gates), Transformer (none)
        has_gates = (
            getattr(encoder, "has_gates", False)
            if replays_itself
            else cell_kind(encoder.rnn) in GATE_NAMES
        )
        if not has_gates:
            return
        with torch.no_grad():
            inputs, lengths, _ = task_problem(pl_module, first_rows(batch, self.max_batch))
            if replays_itself:
                replay = encoder.unroll(inputs, lengths)
            else:
                replay = unroll(encoder.rnn, inputs, lengths)
        steps = torch.arange(inputs.size(1), device=inputs.device)
        if lengths is None:
            mask = torch.ones(inputs.shape[:2], dtype=torch.bool, device=inputs.device)
        else:
            mask = steps.unsqueeze(0) < lengths.to(inputs.device).unsqueeze(1)
        scalars, histograms = {}, {}
        for (layer, direction), gates in replay.gates.items():
            prefix = f"gates/l{layer}{'_reverse' if direction else ''}"
            stats = gate_statistics(gates, mask)
            scalars |= {f"{prefix}/{name}": float(value) for name, value in stats.items()}
            histograms |= {f"{prefix}/{name}": values[mask] for name, values in gates.items()}
        step = trainer.global_step
        for logger in trainer.loggers:
            logger.log_metrics(scalars, step=step)
            if isinstance(logger, TensorBoardLogger):
                for tag, values in histograms.items():
                    logger.experiment.add_histogram(tag, values.float().cpu(), step)
