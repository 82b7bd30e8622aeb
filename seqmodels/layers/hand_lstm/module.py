"""A drop-in ``nn.LSTM`` written gate by gate, with a hand-derived backward.

The equations and the BPTT backward live in :mod:`seqmodels.layers.hand_lstm.function`; this
module reproduces ``nn.LSTM``'s interface: constructor, parameter names, order and
initialisation (so ``load_state_dict`` works both ways), input forms (batched, unbatched,
``batch_first``, ``PackedSequence``) and argument errors.
"""

from __future__ import annotations

import math
import numbers
import warnings

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.utils.rnn import PackedSequence

from seqmodels.layers.hand_lstm.function import lstm_bilayer, lstm_layer

State = tuple[Tensor, Tensor]


def _autocast(tensors: list[Tensor | None], device_type: str) -> list[Tensor | None]:
    """Under autocast, run in the autocast dtype (as ``nn.LSTM`` does)."""
    if not torch.is_autocast_enabled(device_type):
        return tensors
    dtype = torch.get_autocast_dtype(device_type)
    return [t.to(dtype) if t is not None and t.is_floating_point() else t for t in tensors]


def _check_same_dtype(tensors: list[Tensor], weight: Tensor) -> None:
    """ATen's matmul message for an operand whose dtype is not the weights' (unless autocast)."""
    if torch.is_autocast_enabled(weight.device.type):
        return
    for t in tensors:
        if t.dtype != weight.dtype:
            raise RuntimeError(
                "mat1 and mat2 must have the same dtype, but got "
                f"{_aten_name(t.dtype)} and {_aten_name(weight.dtype)}"
            )


def _aten_name(dtype: torch.dtype) -> str:
    """``torch.float64 -> 'Double'``: the scalar type's name as ATen's messages spell it."""
    return str(torch.empty(0, dtype=dtype).type()).removeprefix("torch.").removesuffix("Tensor")


class HandLSTM(nn.Module):
    """Multi-layer (bi)LSTM with the signature, parameters and outputs of ``torch.nn.LSTM``."""

    _WEIGHTS = ("weight_ih", "weight_hh", "bias_ih", "bias_hh", "weight_hr")

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        num_layers: int = 1,
        bias: bool = True,
        batch_first: bool = False,
        dropout: float = 0.0,
        bidirectional: bool = False,
        proj_size: int = 0,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        if (
            not isinstance(dropout, numbers.Number)
            or not 0 <= dropout <= 1
            or isinstance(dropout, bool)
        ):
            raise ValueError(
                "dropout should be a number in range [0, 1] representing the probability of "
                "an element being zeroed"
            )
        if dropout > 0 and num_layers == 1:
            warnings.warn(
                "dropout option adds dropout after all but last recurrent layer, so non-zero "
                f"dropout expects num_layers greater than 1, but got dropout={dropout} and "
                f"num_layers={num_layers}",
                stacklevel=2,
            )
        for name, value, kind in (
            ("bias", bias, bool),
            ("batch_first", batch_first, bool),
            ("input_size", input_size, int),
            ("hidden_size", hidden_size, int),
        ):
            if not isinstance(value, kind):
                raise TypeError(
                    f"{name} should be of type {kind.__name__}, got: {type(value).__name__}"
                )
            if kind is int and value <= 0:
                raise ValueError(f"{name} must be greater than zero")
        if num_layers <= 0:
            raise ValueError("num_layers must be greater than zero")
        if proj_size < 0:
            raise ValueError(
                "proj_size should be a positive integer or zero to disable projections"
            )
        if proj_size >= hidden_size:
            raise ValueError("proj_size has to be smaller than hidden_size")

        self.input_size, self.hidden_size, self.num_layers = input_size, hidden_size, num_layers
        self.bias, self.batch_first, self.dropout = bias, batch_first, float(dropout)
        self.bidirectional, self.proj_size = bidirectional, proj_size
        factory = {"device": device, "dtype": dtype}
        num_directions = 2 if bidirectional else 1
        real_hidden = proj_size if proj_size > 0 else hidden_size
        self._all_weights: list[list[str]] = []  # parameter names per layer-direction
        self._layer_weights: list[list[str | None]] = []  # the same, in lstm_layer's order
        for layer in range(num_layers):
            layer_input = input_size if layer == 0 else real_hidden * num_directions
            for direction in range(num_directions):
                suffix = f"_l{layer}" + ("_reverse" if direction == 1 else "")
                shapes = {"weight_ih": (4 * hidden_size, layer_input)}
                shapes["weight_hh"] = (4 * hidden_size, real_hidden)
                if bias:
                    shapes["bias_ih"] = shapes["bias_hh"] = (4 * hidden_size,)
                if proj_size > 0:
                    shapes["weight_hr"] = (proj_size, hidden_size)
                for name, shape in shapes.items():
                    setattr(self, name + suffix, nn.Parameter(torch.empty(shape, **factory)))
                self._all_weights.append([name + suffix for name in shapes])
                self._layer_weights.append(
                    [name + suffix if name in shapes else None for name in self._WEIGHTS]
                )
        # What code written for nn.LSTM reads (weight drop, weight norm): the mode, and the flat
        # list of weights by name, kept in sync by __setattr__ and refreshed at each forward.
        self.mode = "LSTM"
        self._flat_weights_names = [name for names in self._all_weights for name in names]
        self._layer_slots = [  # per layer-direction, lstm_layer's weights as flat indices
            [self._flat_weights_names.index(n) if n else None for n in names]
            for names in self._layer_weights
        ]
        self._update_flat_weights()
        self.reset_parameters()

    def __setattr__(self, attr: str, value: object) -> None:
        names = self.__dict__.get("_flat_weights_names")
        if names is not None and attr in names:  # as nn.RNNBase: a replaced weight is seen
            self._flat_weights[names.index(attr)] = value
        super().__setattr__(attr, value)

    def _update_flat_weights(self) -> None:
        """``_flat_weights``: the current weight tensors (or None), in nn.LSTM's order.

        Reassigned only when one changed (a parametrization, ``functional_call``, ...).
        """
        current = [getattr(self, n, None) for n in self._flat_weights_names]
        old = self.__dict__.get("_flat_weights")
        if old is None or any(a is not b for a, b in zip(current, old, strict=True)):
            self._flat_weights = current

    def _apply(self, fn, recurse=True):  # noqa: ANN001, ANN202 - nn.Module's signature
        result = super()._apply(fn, recurse)
        self._update_flat_weights()  # .to(), .double(), ... may swap the parameter objects
        return result

    def reset_parameters(self) -> None:
        """U(-1/sqrt(hidden_size), 1/sqrt(hidden_size)) for every parameter, like ``nn.LSTM``."""
        stdv = 1.0 / math.sqrt(self.hidden_size)
        for weight in self.parameters():
            nn.init.uniform_(weight, -stdv, stdv)

    def flatten_parameters(self) -> None:
        """No-op, for code written against ``nn.LSTM``."""

    @property
    def all_weights(self) -> list[list[nn.Parameter]]:
        return [[getattr(self, name) for name in names] for names in self._all_weights]

    def extra_repr(self) -> str:
        s = f"{self.input_size}, {self.hidden_size}"
        for name, default in (
            ("proj_size", 0),
            ("num_layers", 1),
            ("bias", True),
            ("batch_first", False),
            ("dropout", 0),
            ("bidirectional", False),
        ):
            if getattr(self, name) != default:
                s += f", {name}={getattr(self, name)}"
        return s

    # --- argument checks, as in torch.nn.RNNBase / torch.nn.LSTM -------------------------

    def check_input(self, input: Tensor, batch_sizes: Tensor | None) -> None:
        weight = self.weight_ih_l0
        if input.dtype != weight.dtype and not torch._C._is_any_autocast_enabled():
            raise ValueError(
                f"RNN input dtype ({input.dtype}) does not match weight dtype ({weight.dtype}). "
                f"Convert input: input.to({weight.dtype}), or convert model: "
                f"model.to({input.dtype})"
            )
        expected_input_dim = 2 if batch_sizes is not None else 3
        if input.dim() != expected_input_dim:
            raise RuntimeError(
                f"input must have {expected_input_dim} dimensions, got {input.dim()}"
            )
        if self.input_size != input.size(-1):
            raise RuntimeError(
                "input.size(-1) must be equal to input_size. "
                f"Expected {self.input_size}, got {input.size(-1)}"
            )

    def get_expected_hidden_size(
        self, input: Tensor, batch_sizes: Tensor | None, cell: bool = False
    ) -> tuple[int, int, int]:
        if batch_sizes is not None:
            mini_batch = int(batch_sizes[0])
        else:
            mini_batch = input.size(0) if self.batch_first else input.size(1)
        size = self.proj_size if self.proj_size > 0 and not cell else self.hidden_size
        return (self.num_layers * (2 if self.bidirectional else 1), mini_batch, size)

    def check_forward_args(self, input: Tensor, hidden: State, batch_sizes: Tensor | None) -> None:
        self.check_input(input, batch_sizes)
        for k, cell in ((0, False), (1, True)):
            expected = self.get_expected_hidden_size(input, batch_sizes, cell)
            if hidden[k].size() != expected:
                raise RuntimeError(
                    f"Expected hidden[{k}] size {expected}, got {list(hidden[k].size())}"
                )

    @staticmethod
    def permute_hidden(hx: State, permutation: Tensor | None) -> State:
        if permutation is None:
            return hx
        return hx[0].index_select(1, permutation), hx[1].index_select(1, permutation)

    # --- forward ------------------------------------------------------------------------

    def _zero_state(self, input: Tensor, batch: int) -> State:
        layers = self.num_layers * (2 if self.bidirectional else 1)
        real_hidden = self.proj_size if self.proj_size > 0 else self.hidden_size
        zeros = {"dtype": input.dtype, "device": input.device}
        h0 = torch.zeros(layers, batch, real_hidden, **zeros)
        return h0, torch.zeros(layers, batch, self.hidden_size, **zeros)

    def forward(
        self, input: Tensor | PackedSequence, hx: State | None = None
    ) -> tuple[Tensor | PackedSequence, State]:
        """``input, (h_0, c_0) -> output, (h_n, c_n)`` with ``nn.LSTM``'s shapes."""
        self._update_flat_weights()
        packed = isinstance(input, PackedSequence)
        if packed:
            x, batch_sizes, sorted_indices, unsorted_indices = input
            tracing = torch.jit.is_tracing()  # keep sizes as traced tensors, as nn.LSTM does
            if hx is None:
                hx = self._zero_state(x, batch_sizes[0] if tracing else int(batch_sizes[0]))
            else:  # nn.LSTM checks this only unpacked (packed, it can pass silently)
                for k, cell in ((0, False), (1, True)):
                    expected = self.get_expected_hidden_size(x, batch_sizes, cell)
                    if hx[k].size() != expected:
                        raise RuntimeError(
                            f"Expected hidden[{k}] size {expected}, got {list(hx[k].size())}"
                        )
                hx = self.permute_hidden(hx, sorted_indices)
            _check_same_dtype([x, *hx], self.weight_ih_l0)
            steps = batch_sizes if tracing else batch_sizes.tolist()
        else:
            if input.dim() not in (2, 3):
                raise ValueError(f"LSTM: Expected input to be 2D or 3D, got {input.dim()}D instead")
            is_batched = input.dim() == 3
            batch_dim = 0 if self.batch_first else 1
            x = input if is_batched else input.unsqueeze(batch_dim)
            batch_sizes = sorted_indices = unsorted_indices = None
            if hx is None:
                hx = self._zero_state(x, x.size(batch_dim))
            elif is_batched and (hx[0].dim() != 3 or hx[1].dim() != 3):
                raise RuntimeError(
                    "For batched 3-D input, hx and cx should also be 3-D but got "
                    f"({hx[0].dim()}-D, {hx[1].dim()}-D) tensors"
                )
            elif not is_batched and (hx[0].dim() != 2 or hx[1].dim() != 2):
                raise RuntimeError(
                    "For unbatched 2-D input, hx and cx should also be 2-D but got "
                    f"({hx[0].dim()}-D, {hx[1].dim()}-D) tensors"
                )
            elif not is_batched:
                hx = (hx[0].unsqueeze(1), hx[1].unsqueeze(1))
            self.check_forward_args(x, hx, None)
            _check_same_dtype(list(hx), self.weight_ih_l0)
            if x.size(1 - batch_dim) == 0:
                raise RuntimeError("Expected sequence length to be larger than 0 in RNN")
            if self.batch_first:
                x = x.transpose(0, 1)
            seq_len, batch = x.shape[:2]  # under torch.jit.trace: traced 0-dim tensors
            steps = torch.full((seq_len,), batch) if torch.jit.is_tracing() else [batch] * seq_len
            x = x.flatten(0, 1)  # time-major rows

        out, h_n, c_n = self._run(x, hx, steps)

        if packed:
            output = PackedSequence(out, batch_sizes, sorted_indices, unsorted_indices)
            return output, self.permute_hidden((h_n, c_n), unsorted_indices)
        output = out.view(seq_len, batch, out.size(-1))
        if self.batch_first:
            output = output.transpose(0, 1)
        if not is_batched:
            return output.squeeze(batch_dim), (h_n.squeeze(1), c_n.squeeze(1))
        return output, (h_n, c_n)

    def _run(
        self, x: Tensor, hx: State, batch_sizes: list[int] | Tensor
    ) -> tuple[Tensor, Tensor, Tensor]:
        """All layers and directions over packed rows ``x``; returns ``out, h_n, c_n``."""
        x, h0, c0 = _autocast([x, *hx], x.device.type)
        num_directions = 2 if self.bidirectional else 1
        h_n, c_n = [], []
        for layer in range(self.num_layers):
            if layer > 0 and self.dropout > 0 and self.training:
                x = F.dropout(x, self.dropout, training=True)
            flat = self._flat_weights
            weights = [
                _autocast([flat[i] if i is not None else None for i in slots], x.device.type)
                for slots in self._layer_slots[layer * num_directions :][:num_directions]
            ]
            if num_directions == 1:
                x, h, c = lstm_layer(x, h0[layer], c0[layer], *weights[0], batch_sizes)
                h, c = h[None], c[None]
            else:
                pair = slice(2 * layer, 2 * layer + 2)
                x, h, c = lstm_bilayer(x, h0[pair], c0[pair], *weights, batch_sizes)
            h_n.append(h)
            c_n.append(c)
        return x, torch.cat(h_n), torch.cat(c_n)
