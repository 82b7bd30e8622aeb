"""The char LM's network: character ids and a carried state in, next-character logits out."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from seqmodels.core.errors import ConfigError
from seqmodels.layers.encoders import State
from seqmodels.layers.transformer import UNBOUNDED_CONTEXT
from seqmodels.nets.parts import build_embedding, build_encoder


class CausalEncoderRequired(ConfigError):
    """A bidirectional encoder was asked to drive a causal language model."""


def require_causal(model: dict[str, Any]) -> None:
    """Refuse a bidirectional encoder (a causal LM must not see the character it predicts) and
    a Transformer without a window (the LM carries its context from batch to batch)."""
    if model.get("bidirectional", False):
        raise CausalEncoderRequired(
            f"model={model.get('name', model.get('cell'))} is bidirectional, but task=char_lm "
            "predicts each character from the ones before it: a bidirectional encoder would "
            "see the character it must predict. Choose a unidirectional model "
            "(rnn, lstm, gru, hand_lstm, mingru, minlstm, transformer)."
        )
    if model.get("cell") == "transformer" and model.get("window", 128) is None:
        raise ConfigError(f"task=char_lm: {UNBOUNDED_CONTEXT}")


def on_device(state: State | None, device: torch.device) -> State | None:
    """``state`` on ``device`` (a no-op where it already is)."""
    if state is None or isinstance(state, torch.Tensor):
        return None if state is None else state.to(device)
    return tuple(part.to(device) for part in state)


class CharLMNet(nn.Module):
    """embedding -> encoder -> linear over the character vocabulary ``vocab`` (chars by id).

    Built from the plain hyperparameters a checkpoint stores; :class:`seqmodels.tasks.CharLM`
    is this network plus training, so both have the same parameter names.
    """

    data_kind = "text"  # the data it reads (what scripts check a checkpoint against)

    def __init__(self, vocab: list[str], model: dict[str, Any]) -> None:
        # In a task module, super() is its LightningModule: the layers come after its set-up.
        super().__init__()
        require_causal(model)
        self.vocab = list(vocab)
        self.embedding = build_embedding(model, len(vocab), padding_idx=None)  # no pad id
        self.encoder = build_encoder(model, self.embedding.embedding_dim)
        self.dropout = nn.Dropout(model.get("dropout", 0.0))
        self.head = nn.Linear(self.encoder.output_size, len(vocab))

    def forward(self, x: torch.Tensor, state: State | None = None) -> tuple[torch.Tensor, State]:
        """Next-character logits ``[B, T, vocab]`` for ids ``[B, T]``, and the state after them.

        ``state`` (``None``: zeros) is the encoder's recurrent state after the text before
        ``x``: pass the returned one back to continue the text (sampling, carried-state BPTT).
        """
        # A state restored from a checkpoint may sit on another device than the batch:
        # Lightning calls on_load_checkpoint before the strategy moves the module to the GPU.
        state = on_device(state, x.device)
        out, state = self.encoder.run(self.dropout(self.embedding(x)), state)
        return self.head(self.dropout(out)), state
