"""Recurrent encoders behind one interface: embeddings in, per-token states out.

Every ``model=`` option builds one of these; the task heads only see ``output_size`` and
``bidirectional``, so swapping the RNN never touches a task.
"""

from __future__ import annotations

import warnings

import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from seqmodels.layers.stack_checks import check_stack

CELLS = ("rnn", "lstm", "gru", "hand_lstm")
# The other encoder families and the ``model=`` keys each takes: minGRU/minLSTM
# (seqmodels.layers.min_rnn) and the Transformer (seqmodels.layers.transformer).
MIN_RNN_KEYS = ("cell", "hidden_size", "num_layers", "dropout", "bidirectional")
MIN_RNN_KEYS += ("layer_norm", "residual", "scan", "parallel")
TRANSFORMER_KEYS = ("hidden_size", "num_layers", "dropout", "bidirectional", "num_heads")
TRANSFORMER_KEYS += ("window", "mlp_ratio")
OTHER_CELLS = ("mingru", "minlstm", "transformer")

# The recurrent state a layer stack carries between calls: ``h`` for rnn/gru, ``(h, c)`` for
# LSTMs; each ``[num_layers * directions, B, hidden]``, as the torch.nn modules take and return.
State = torch.Tensor | tuple[torch.Tensor, torch.Tensor]


def cell_class(cell: str) -> type[nn.Module]:
    """The recurrent module behind a ``model.cell`` name."""
    if cell == "hand_lstm":
        from seqmodels.layers.hand_lstm.module import HandLSTM

        return HandLSTM
    return {"rnn": nn.RNN, "lstm": nn.LSTM, "gru": nn.GRU}[cell]


def other_encoder(model: dict, input_size: int) -> nn.Module:
    """The minGRU/minLSTM or Transformer encoder a ``model=`` config (plain dict) describes."""
    if model["cell"] == "transformer":
        from seqmodels.layers.transformer import TransformerEncoder

        kwargs = {k: model[k] for k in TRANSFORMER_KEYS if k in model}
        return TransformerEncoder(input_size=input_size, **kwargs)
    from seqmodels.layers.min_rnn import MinRNNEncoder

    return MinRNNEncoder(input_size=input_size, **{k: model[k] for k in MIN_RNN_KEYS if k in model})


@torch.no_grad()
def init_forget_bias(lstm: nn.Module, value: float) -> None:
    """Start every forget gate of ``lstm`` (nn.LSTM or HandLSTM) at bias ``value``.

    The gate is ``f = σ(W_if x + b_if + W_hf h + b_hf)``: ``b_if = value`` and ``b_hf = 0`` make
    the cell keep ``σ(value)`` of its memory per step from the start (about 0.73 at 1), so
    gradients reach far back before the gates have learnt anything (Gers et al. 2000;
    Jozefowicz et al. 2015; Keras' ``unit_forget_bias``). Gate rows are ordered i, f, g, o.
    """
    hidden = lstm.hidden_size
    for name, bias in lstm.named_parameters():
        if name.startswith("bias_ih"):
            bias[hidden : 2 * hidden] = value
        elif name.startswith("bias_hh"):
            bias[hidden : 2 * hidden] = 0.0


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
        forget_bias: float | None = None,
    ) -> None:
        super().__init__()
        check_stack(cell, CELLS, hidden_size, num_layers, dropout)
        if nonlinearity not in ("tanh", "relu"):
            raise ValueError(f"model.nonlinearity must be 'tanh' or 'relu', got {nonlinearity!r}")
        if forget_bias is not None and cell not in ("lstm", "hand_lstm"):
            warnings.warn(
                f"model.forget_bias={forget_bias} sets an LSTM's forget-gate bias; "
                f"model.cell={cell!r} has no forget gate, so it is not used",
                stacklevel=2,
            )
            forget_bias = None
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
        if forget_bias is not None:
            init_forget_bias(self.rnn, forget_bias)
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
