"""HandLSTMCell: one step of the hand-written LSTM, a drop-in for ``torch.nn.LSTMCell``."""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from seqmodels.layers.hand_lstm.function import lstm_layer, reference_step
from seqmodels.layers.hand_lstm.module import State, _check_same_dtype


class HandLSTMCell(nn.Module):
    """One LSTM step with the signature, parameters and outputs of ``torch.nn.LSTMCell``."""

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        bias: bool = True,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        factory = {"device": device, "dtype": dtype}
        self.input_size, self.hidden_size, self.bias = input_size, hidden_size, bias
        self.weight_ih = nn.Parameter(torch.empty(4 * hidden_size, input_size, **factory))
        self.weight_hh = nn.Parameter(torch.empty(4 * hidden_size, hidden_size, **factory))
        if bias:
            self.bias_ih = nn.Parameter(torch.empty(4 * hidden_size, **factory))
            self.bias_hh = nn.Parameter(torch.empty(4 * hidden_size, **factory))
        else:
            self.register_parameter("bias_ih", None)
            self.register_parameter("bias_hh", None)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        stdv = 1.0 / math.sqrt(self.hidden_size) if self.hidden_size > 0 else 0
        for weight in self.parameters():
            nn.init.uniform_(weight, -stdv, stdv)

    def extra_repr(self) -> str:
        return f"{self.input_size}, {self.hidden_size}" + ("" if self.bias else ", bias=False")

    def forward(self, input: Tensor, hx: State | None = None) -> State:
        """``input [B, I] or [I], (h, c) -> (h', c')``; zero state when ``hx`` is None."""
        if input.dim() not in (1, 2):
            raise ValueError(f"LSTMCell: Expected input to be 1D or 2D, got {input.dim()}D instead")
        if hx is not None:
            for idx, value in enumerate(hx):
                if value.dim() not in (1, 2):
                    raise ValueError(
                        f"LSTMCell: Expected hx[{idx}] to be 1D or 2D, got {value.dim()}D instead"
                    )
        is_batched = input.dim() == 2
        if not is_batched:
            input = input.unsqueeze(0)
        if hx is None:
            zeros = input.new_zeros(input.size(0), self.hidden_size)
            hx = (zeros, zeros)
        else:
            hx = (hx[0].unsqueeze(0), hx[1].unsqueeze(0)) if not is_batched else hx
        self._check(input, hx)
        weights = (self.weight_ih, self.weight_hh, self.bias_ih, self.bias_hh, None)
        if hx[1].dtype == input.dtype or torch.is_autocast_enabled(input.device.type):
            _, h, c = lstm_layer(input, hx[0], hx[1], *weights, [input.size(0)])
        else:  # as ATen's lstm_cell: c of another dtype type-promotes c' = f c + i g (and h')
            bias = self.bias_ih + self.bias_hh if self.bias else None
            h, c = reference_step(input, hx[0], hx[1], self.weight_ih, self.weight_hh, bias)
        return (h, c) if is_batched else (h.squeeze(0), c.squeeze(0))

    def _check(self, input: Tensor, hx: State) -> None:
        """The checks (and messages) of ATen's ``lstm_cell``."""
        if len(hx) != 2:
            raise RuntimeError("lstm_cell expects two hidden states")
        if input.size(1) != self.input_size:
            raise RuntimeError(
                f"input has inconsistent input_size: got {input.size(1)} expected {self.input_size}"
            )
        for k, state in enumerate(hx):
            if input.size(0) != state.size(0):
                raise RuntimeError(
                    f"Input batch size {input.size(0)} doesn't match hidden{k} batch size "
                    f"{state.size(0)}"
                )
            if state.size(1) != self.hidden_size:
                raise RuntimeError(
                    f"hidden{k} has inconsistent hidden_size: got {state.size(1)}, "
                    f"expected {self.hidden_size}"
                )
        _check_same_dtype([input, hx[0]], self.weight_ih)  # the matmul operands
