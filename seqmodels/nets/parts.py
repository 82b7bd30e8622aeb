"""Layers every task network builds from its plain ``model=`` config: embeddings and encoders."""

from __future__ import annotations

from typing import Any

from torch import nn

from seqmodels.layers import RNNEncoder
from seqmodels.layers.encoders import OTHER_CELLS, other_encoder
from seqmodels.layers.word_embedding import build_embedding

__all__ = ["ENCODER_KEYS", "build_embedding", "build_encoder"]

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
