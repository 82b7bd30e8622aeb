"""The long-range problems' network: an encoder and a head read where the problem is scored."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from seqmodels.data.generators import BLANK
from seqmodels.nets.parts import build_embedding, build_encoder

ADDING_FEATURES = 2  # (value, marker) per step


class LongRangeNet(nn.Module):
    """encoder -> a linear head read at the end of the sequence.

    ``problem="adding"``: the encoder reads the two features of each step directly and the head
    regresses the sum from the last state. ``problem="copy"``: embedded tokens (blank, the
    ``num_symbols`` symbols, the delimiter); at each of the last ``copy_length`` steps the head
    classifies which symbol to recall. :class:`seqmodels.tasks.LongRange` is this network plus
    training, so both have the same parameter names.
    """

    data_kind = "long_range"  # the data it reads (what scripts check a checkpoint against)

    def __init__(
        self, problem: str, num_symbols: int, copy_length: int, model: dict[str, Any]
    ) -> None:
        # In a task module, super() is its LightningModule: the layers come after its set-up.
        super().__init__()
        self.problem, self.num_symbols, self.copy_length = problem, num_symbols, copy_length
        if problem == "copy":
            # The blank (id 0) is a fixed zero input: it marks "no symbol here", and every
            # recorded copy result was measured with it so.
            self.embedding: nn.Module = build_embedding(model, num_symbols + 2, padding_idx=BLANK)
            input_size = self.embedding.embedding_dim
        else:
            self.embedding = nn.Identity()
            input_size = ADDING_FEATURES
        self.encoder = build_encoder(model, input_size)
        self.head = nn.Linear(self.encoder.output_size, 1 if problem == "adding" else num_symbols)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Adding: the predicted sums ``[B]``; copy: symbol logits ``[B, copy_length, symbols]``."""
        return self.read_out(self.encoder(self.embedding(x)))

    def read_out(self, states: torch.Tensor) -> torch.Tensor:
        """The head over the encoder states ``[B, T, H]`` at the steps the problem is scored."""
        if self.problem == "adding":
            return self.head(states[:, -1]).squeeze(-1)
        return self.head(states[:, -self.copy_length :])

    def per_sample_loss(self, output: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """``[B]``: squared error (adding), mean cross-entropy over the recalled symbols (copy)."""
        if self.problem == "adding":
            return (output - y) ** 2
        return F.cross_entropy(output.transpose(1, 2), y - 1, reduction="none").mean(1)
