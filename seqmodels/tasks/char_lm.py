"""Character-level language modelling over any causal encoder."""

from __future__ import annotations

import math
from typing import Any

import torch
from torch.nn import functional as F
from torchmetrics import MeanMetric

from seqmodels.core.distributed import gathered, own_share
from seqmodels.data.streams import IGNORE
from seqmodels.layers.encoders import State
from seqmodels.nets.char_lm import CausalEncoderRequired, CharLMNet, require_causal
from seqmodels.tasks.base import SequenceTask

__all__ = ["CausalEncoderRequired", "CharLM", "detached", "require_causal"]


def detached(state: State | None) -> State | None:
    """The state cut from the graph that produced it: back-propagation stops here (truncation)."""
    if state is None or isinstance(state, torch.Tensor):
        return None if state is None else state.detach()
    return tuple(part.detach() for part in state)


class CharLM(CharLMNet, SequenceTask):
    """embedding -> encoder -> linear over the character vocabulary.

    Logs ``<stage>/loss`` in nats per character, ``bpc`` (bits per character) and ``ppl``,
    and ``<stage>/loss_windowed`` when the data has a windowed loader. The main metric is
    ``val/bpc``.

    With ``carry_state`` (truncated BPTT; the data must then yield contiguous streams, see
    :class:`seqmodels.data.CharLMDataModule`), each training batch starts from the state the
    previous one ended in, detached, and from zeros at the start of each epoch. Evaluation
    always carries the state through its first loader (contiguous streams) and starts every
    item of the second (independent windows) from zeros.

    The layers and forward live in :class:`seqmodels.nets.CharLMNet`; this adds training.
    """

    def __init__(
        self,
        vocab: list[str],
        model: dict[str, Any],
        optimizer: dict[str, Any],
        scheduler: dict[str, Any] | None = None,
        carry_state: bool = True,
    ) -> None:
        super().__init__(vocab, model)  # SequenceTask's set-up, then the layers
        self.save_hyperparameters(logger=False)
        self.carry_state = carry_state
        self.losses.update({f"{s}_windowed": MeanMetric() for s in ("val", "test")})
        # The training state after the last batch (saved in checkpoints: a mid-epoch resume
        # continues exactly), and the evaluation state of the stream loader.
        self.train_state: State | None = None
        self.eval_state: State | None = None

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int):
        x, y = batch
        state = self.train_state if self.carry_state and batch_idx > 0 else None
        logits, state = self(x, state)
        self.train_state = detached(state) if self.carry_state else None
        loss = F.cross_entropy(logits.transpose(1, 2), y)
        self.log_loss("train", loss, y.numel())
        return loss

    def validation_step(self, batch, batch_idx: int, dataloader_idx: int = 0) -> None:
        self._evaluate(batch, batch_idx, dataloader_idx, "val")

    def test_step(self, batch, batch_idx: int, dataloader_idx: int = 0) -> None:
        self._evaluate(batch, batch_idx, dataloader_idx, "test")

    def _evaluate(
        self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int, loader: int, stage: str
    ) -> None:
        """Loader 0: streams with carried state (reset at the first window); 1: windows."""
        x, y = batch
        streaming = loader == 0
        state = self.eval_state if streaming and batch_idx > 0 else None
        logits, state = self(x, state)
        if streaming:
            self.eval_state = state
        total = F.cross_entropy(logits.transpose(1, 2).float(), y, reduction="sum")
        count = (y != IGNORE).sum()
        name = stage if streaming else f"{stage}_windowed"
        self.losses[name].update(total / count.clamp(min=1), weight=count)

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        state = self.train_state
        parts = [state] if isinstance(state, torch.Tensor) else list(state or [])
        checkpoint["carried_state"] = [p.cpu() for p in parts]
        # Under DDP each process carries the state of its own streams.
        if (states := gathered(self.trainer, checkpoint["carried_state"])) is not None:
            checkpoint["carried_state_per_rank"] = states

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        super().on_load_checkpoint(checkpoint)
        own = own_share(self._trainer, checkpoint.get("carried_state_per_rank"))
        # moved to the batch's device in forward
        parts = list(checkpoint.get("carried_state", []) if own is None else own)
        self.train_state = (parts[0] if len(parts) == 1 else tuple(parts)) if parts else None

    def _log_epoch(self, stage: str) -> None:
        loss = self.epoch_loss(stage)
        metrics = {
            f"{stage}/loss": loss,
            f"{stage}/bpc": loss / math.log(2),
            f"{stage}/ppl": loss.exp(),
        }
        if self.losses[f"{stage}_windowed"].update_called:
            metrics[f"{stage}/loss_windowed"] = self.epoch_loss(f"{stage}_windowed")
        for name, value in metrics.items():  # the bar shows train/loss and the main metric only
            self.log(name, value, prog_bar=name == "val/bpc")
