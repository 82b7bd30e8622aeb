"""Layers every task network builds from its plain ``model=`` config: embeddings and encoders."""

from __future__ import annotations

from typing import Any

from torch import nn

from seqmodels.errors import ConfigError
from seqmodels.models import RNNEncoder
from seqmodels.models.encoders import OTHER_CELLS, other_encoder

ENCODER_KEYS = (
    "cell",
    "hidden_size",
    "num_layers",
    "dropout",
    "bidirectional",
    "nonlinearity",
    "forget_bias",
)


def build_encoder(model: dict[str, Any], input_size: int) -> nn.Module:
    """The encoder described by a ``model=`` config (plain dict)."""
    if model.get("cell") in OTHER_CELLS:  # minGRU/minLSTM, Transformer
        return other_encoder(model, input_size)
    return RNNEncoder(input_size=input_size, **{k: model[k] for k in ENCODER_KEYS if k in model})


def build_embedding(
    model: dict[str, Any], num_embeddings: int, padding_idx: int | None
) -> nn.Embedding:
    """Token embeddings; ``padding_idx`` only where that id is padding (its row stays zero and
    never learns), ``None`` where every id is a real token (the char LM's id 0 is a character)."""
    dim = model.get("embedding_dim", 0)
    if dim < 1:
        raise ConfigError(f"model.embedding_dim must be >= 1, got {dim}")
    return nn.Embedding(num_embeddings, dim, padding_idx=padding_idx)
