"""Recurrent encoders behind one interface: embeddings in, per-token states out.

Every ``model=`` option builds one of these; the task heads only see ``output_size`` and
``bidirectional``, so swapping the RNN never touches a task.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

CELLS = ("rnn", "lstm", "gru", "hand_lstm")

# The recurrent state a layer stack carries between calls: ``h`` for rnn/gru, ``(h, c)`` for
# LSTMs; each ``[num_layers * directions, B, hidden]``, as the torch.nn modules take and return.
State = torch.Tensor | tuple[torch.Tensor, torch.Tensor]


def cell_class(cell: str) -> type[nn.Module]:
    """The recurrent module behind a ``model.cell`` name."""
    if cell == "hand_lstm":
        from seqmodels.models.hand_lstm import HandLSTM

        return HandLSTM
    return {"rnn": nn.RNN, "lstm": nn.LSTM, "gru": nn.GRU}[cell]


class RNNEncoder(nn.Module):
    """A stack of ``cell`` layers over ``[batch, time, input_size]`` embeddings.

    ``forward(x, lengths)`` packs the batch when ``lengths`` is given, so padding never
    reaches the recurrence (and a reverse direction starts at each sequence's own end).
    """

    def __init__(
        self,
        cell: str,
        input_size: int,
        hidden_size: int,
        num_layers: int = 1,
        dropout: float = 0.0,
        bidirectional: bool = False,
        nonlinearity: str = "tanh",
    ) -> None:
        super().__init__()
        if cell not in CELLS:
            raise ValueError(f"model.cell={cell!r} is not one of {', '.join(CELLS)}")
        for option, value in (("hidden_size", hidden_size), ("num_layers", num_layers)):
            if value < 1:
                raise ValueError(f"model.{option} must be >= 1, got {value}")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"model.dropout must be in [0, 1), got {dropout}")
        if nonlinearity not in ("tanh", "relu"):
            raise ValueError(f"model.nonlinearity must be 'tanh' or 'relu', got {nonlinearity!r}")
        extra = {"nonlinearity": nonlinearity} if cell == "rnn" else {}
        self.rnn = cell_class(cell)(
            input_size,
            hidden_size,
            num_layers=num_layers,
            dropout=dropout if num_layers > 1 else 0.0,
            bidirectional=bidirectional,
            batch_first=True,
            **extra,
        )
        self.cell = cell
        self.bidirectional = bidirectional
        self.output_size = hidden_size * (2 if bidirectional else 1)

    def run(self, x: torch.Tensor, state: State | None = None) -> tuple[torch.Tensor, State]:
        """``[B, T, input_size]`` and a carried state -> outputs and the state after step T.

        The state continues a sequence across calls (truncated BPTT, sampling one step at a
        time); ``None`` starts from zeros.
        """
        return self.rnn(x, state)

    def forward(self, x: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        """``[B, T, input_size]`` -> ``[B, T, output_size]`` (zeros past each length)."""
        if lengths is None:
            return self.rnn(x)[0]
        packed = pack_padded_sequence(x, lengths.cpu(), batch_first=True, enforce_sorted=False)
        out, _ = self.rnn(packed)
        return pad_packed_sequence(out, batch_first=True, total_length=x.size(1))[0]
