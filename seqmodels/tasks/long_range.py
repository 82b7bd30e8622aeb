"""Long-range memory problems (adding, copy) over any encoder: where a plain RNN fails."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F
from torchmetrics import MeanMetric

from seqmodels.nets.long_range import LongRangeNet
from seqmodels.tasks.base import SequenceTask

ADDING_CHANCE_MSE = 1 / 6  # Var(U1 + U2): the MSE of always predicting the mean


class LongRange(LongRangeNet, SequenceTask):
    """encoder -> a linear head read at the end of the sequence.

    ``problem="adding"``: the encoder reads the two features of each step directly, the head
    regresses the sum from the last state; the loss is the MSE (``<stage>/mse``, beside
    ``<stage>/chance_mse``, the MSE of predicting the mean on the same sequences, ~0.167).

    ``problem="copy"``: embedded tokens; at each of the last ``copy_length`` steps the head
    classifies which symbol to recall; the loss is their cross-entropy, ``<stage>/acc`` the
    share of recalled symbols right, ``<stage>/chance_acc`` = 1 / ``num_symbols``.

    The main metric is ``val/loss`` (the MSE for adding) for both. The layers, forward and
    per-sample loss live in :class:`seqmodels.nets.LongRangeNet`; this adds training.
    """

    def __init__(
        self,
        problem: str,
        num_symbols: int,
        copy_length: int,
        model: dict[str, Any],
        optimizer: dict[str, Any],
        scheduler: dict[str, Any] | None = None,
    ) -> None:
        # SequenceTask's set-up, then the layers
        super().__init__(problem, num_symbols, copy_length, model)
        self.save_hyperparameters(logger=False)
        self.metrics = nn.ModuleDict(
            {
                f"{stage}_{name}": MeanMetric()
                for stage in ("val", "test")
                for name in (("mse", "chance_mse") if problem == "adding" else ("acc",))
            }
        )

    def _step(self, batch: tuple[torch.Tensor, torch.Tensor], stage: str) -> torch.Tensor:
        x, y = batch
        output = self(x)
        loss = self.per_sample_loss(output, y).mean()
        self.log_loss(stage, loss, y.size(0))
        if stage != "train":
            if self.problem == "adding":
                self.metrics[f"{stage}_mse"].update((output - y) ** 2)
                self.metrics[f"{stage}_chance_mse"].update((1.0 - y) ** 2)
            else:
                self.metrics[f"{stage}_acc"].update((output.argmax(-1) + 1 == y).float())
        return loss

    def _log_epoch(self, stage: str) -> None:
        values = {f"{stage}/loss": self.epoch_loss(stage)}
        for key, metric in self.metrics.items():
            if key.startswith(stage + "_"):
                name = key.removeprefix(stage + "_")
                values[f"{stage}/{name}"] = metric.compute() * (100 if name == "acc" else 1)
                metric.reset()
        if self.problem == "copy":
            values[f"{stage}/chance_acc"] = torch.tensor(100.0 / self.num_symbols)
        for name, value in values.items():  # the bar shows train/loss and the main metric only
            self.log(name, value, prog_bar=name == "val/loss")

    def grad_flow_problem(
        self, batch: tuple[torch.Tensor, torch.Tensor]
    ) -> tuple[torch.Tensor, None, Callable[[torch.Tensor], torch.Tensor]]:
        """For the gradient-flow callback: encoder inputs, lengths (none), per-sample loss.

        The loss is the one at the last step (the adding problem's only output; for copy, the
        last recalled symbol's).
        """
        x, y = batch
        inputs = self.embedding(x).detach()

        def loss_of(states: torch.Tensor) -> torch.Tensor:
            if self.problem == "adding":
                return self.per_sample_loss(self.read_out(states), y)
            logits = self.head(states[:, -1])
            return F.cross_entropy(logits, y[:, -1] - 1, reduction="none")

        return inputs, None, loss_of
