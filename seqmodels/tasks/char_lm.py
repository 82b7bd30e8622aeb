"""Character-level language modelling over any causal encoder."""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from seqmodels.errors import ConfigError
from seqmodels.models.encoders import State
from seqmodels.tasks.base import SequenceTask, build_embedding, build_encoder


class CausalEncoderRequired(ConfigError):
    """A bidirectional encoder was asked to drive a causal language model."""


def require_causal(model: dict[str, Any]) -> None:
    """Refuse a bidirectional encoder: a causal LM must not see the character it predicts."""
    if model.get("bidirectional", False):
        raise CausalEncoderRequired(
            f"model={model.get('name', model.get('cell'))} is bidirectional, but task=char_lm "
            "predicts each character from the ones before it: a bidirectional encoder would "
            "see the character it must predict. Choose a unidirectional model "
            "(rnn, lstm, gru, hand_lstm)."
        )


class CharLM(SequenceTask):
    """embedding -> encoder -> linear over the character vocabulary.

    Logs ``<stage>/loss`` in nats per character, ``bpc`` (bits per character) and ``ppl``.
    The main metric is ``val/bpc``.
    """

    data_kind = "text"
    monitor = "val/bpc"
    mode = "min"

    def __init__(
        self,
        vocab: list[str],
        model: dict[str, Any],
        optimizer: dict[str, Any],
        scheduler: dict[str, Any] | None = None,
    ) -> None:
        super().__init__()
        require_causal(model)
        self.save_hyperparameters(logger=False)
        self.vocab = list(vocab)
        self.embedding = build_embedding(model, len(vocab))
        self.encoder = build_encoder(model, self.embedding.embedding_dim)
        self.dropout = nn.Dropout(model.get("dropout", 0.0))
        self.head = nn.Linear(self.encoder.output_size, len(vocab))

    def forward(self, x: torch.Tensor, state: State | None = None) -> tuple[torch.Tensor, State]:
        """Next-character logits ``[B, T, vocab]`` for ids ``[B, T]``, and the state after them.

        ``state`` (``None``: zeros) is the encoder's recurrent state after the text before
        ``x``: pass the returned one back to continue the text (sampling, carried-state BPTT).
        """
        out, state = self.encoder.run(self.dropout(self.embedding(x)), state)
        return self.head(self.dropout(out)), state

    def _step(self, batch: tuple[torch.Tensor, torch.Tensor], stage: str) -> torch.Tensor:
        x, y = batch
        logits, _ = self(x)
        loss = F.cross_entropy(logits.transpose(1, 2), y)
        self.log_loss(stage, loss, y.numel())
        return loss

    def _log_epoch(self, stage: str) -> None:
        loss = self.epoch_loss(stage)
        self.log_dict(
            {f"{stage}/loss": loss, f"{stage}/bpc": loss / math.log(2), f"{stage}/ppl": loss.exp()},
            prog_bar=stage == "val",
        )
