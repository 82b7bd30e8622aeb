"""Recurrent layers replayed step by step from their own weights, with every gate exposed.

``nn.LSTM`` and ``nn.GRU`` run fused kernels that keep their gates to themselves. The pure
functions here recompute them exactly, with torch's equations and the layer's parameters
(``weight_ih_l{k}``, ``weight_hh_l{k}``, ``bias_ih_l{k}``, ``bias_hh_l{k}`` and ``_reverse``;
the hand-written LSTM has the same names), so the states they return are the layer's outputs.
:func:`unroll` runs a whole (stacked, bidirectional) layer that way and returns each step's
states and gates: the gate statistics and the gradient flow through time read them.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import Tensor, nn
from torch.nn import functional as F

# Gate names per cell kind, in the row order of torch's weights.
GATE_NAMES = {"lstm": ("input", "forget", "cell", "output"), "gru": ("reset", "update", "new")}


@dataclass
class LayerWeights:
    """One layer-direction's parameters (``None`` biases when the layer has none)."""

    w_ih: Tensor
    w_hh: Tensor
    b_ih: Tensor | None
    b_hh: Tensor | None


def cell_kind(rnn: nn.Module) -> str:
    """``lstm`` (nn.LSTM, HandLSTM), ``gru`` or ``rnn_tanh`` / ``rnn_relu``."""
    if isinstance(rnn, nn.LSTM) or type(rnn).__name__ == "HandLSTM":
        if getattr(rnn, "proj_size", 0):
            raise ValueError("step-by-step replay does not support LSTMs with proj_size > 0")
        return "lstm"
    if isinstance(rnn, nn.GRU):
        return "gru"
    if isinstance(rnn, nn.RNN):
        return f"rnn_{rnn.nonlinearity}"
    raise TypeError(f"cannot replay {type(rnn).__name__}: not an RNN, LSTM, GRU or HandLSTM")


def layer_weights(rnn: nn.Module, layer: int, reverse: bool = False) -> LayerWeights:
    """The parameters of ``rnn``'s layer ``layer`` (its reverse direction if ``reverse``)."""
    suffix = f"_l{layer}" + ("_reverse" if reverse else "")
    names = ("weight_ih", "weight_hh", "bias_ih", "bias_hh")
    return LayerWeights(*(getattr(rnn, name + suffix, None) for name in names))


def lstm_gates(x: Tensor, h: Tensor, w: LayerWeights) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """``i, f, g, o`` of one step: σ, σ, tanh, σ of ``W_ih x + b_ih + W_hh h + b_hh``."""
    pre = F.linear(x, w.w_ih, w.b_ih) + F.linear(h, w.w_hh, w.b_hh)
    i, f, g, o = pre.chunk(4, dim=-1)
    return torch.sigmoid(i), torch.sigmoid(f), torch.tanh(g), torch.sigmoid(o)


def lstm_step(
    x: Tensor, h: Tensor, c: Tensor, w: LayerWeights
) -> tuple[Tensor, Tensor, tuple[Tensor, ...]]:
    """``c' = f c + i g``, ``h' = o tanh(c')``; returns ``h', c'`` and the gates ``i, f, g, o``."""
    i, f, g, o = lstm_gates(x, h, w)
    c = f * c + i * g
    return o * torch.tanh(c), c, (i, f, g, o)


def gru_step(x: Tensor, h: Tensor, w: LayerWeights) -> tuple[Tensor, tuple[Tensor, ...]]:
    """torch's GRU: ``r, z = σ(...)``, ``n = tanh(W_in x + b_in + r (W_hn h + b_hn))``,
    ``h' = (1 - z) n + z h``; returns ``h'`` and the gates ``r, z, n``."""
    x_r, x_z, x_n = F.linear(x, w.w_ih, w.b_ih).chunk(3, dim=-1)
    h_r, h_z, h_n = F.linear(h, w.w_hh, w.b_hh).chunk(3, dim=-1)
    r, z = torch.sigmoid(x_r + h_r), torch.sigmoid(x_z + h_z)
    n = torch.tanh(x_n + r * h_n)
    return (1 - z) * n + z * h, (r, z, n)


def rnn_step(x: Tensor, h: Tensor, w: LayerWeights, nonlinearity: str = "tanh") -> Tensor:
    """Elman: ``h' = act(W_ih x + b_ih + W_hh h + b_hh)``."""
    pre = F.linear(x, w.w_ih, w.b_ih) + F.linear(h, w.w_hh, w.b_hh)
    return torch.tanh(pre) if nonlinearity == "tanh" else torch.relu(pre)


def reverse_within(x: Tensor, lengths: Tensor | None) -> Tensor:
    """``[B, T, ...]`` with each sequence's first ``length`` steps reversed (the rest kept).

    What a reverse direction reads: it starts at each sequence's own last step, as
    ``nn.LSTM`` does on a packed batch. Applying it twice gives ``x`` back.
    """
    if lengths is None:
        return x.flip(1)
    steps = torch.arange(x.size(1), device=x.device).unsqueeze(0)
    lengths = lengths.to(x.device).unsqueeze(1)
    index = torch.where(steps < lengths, lengths - 1 - steps, steps)
    index = index.view(*index.shape, *([1] * (x.dim() - 2))).expand_as(x)
    return x.gather(1, index)


@dataclass
class Unrolled:
    """What :func:`unroll` returns.

    ``output``: ``[B, T, directions * H]``, the layer stack's output (as ``nn.LSTM`` returns
    it with ``batch_first=True``; padded steps are not zeroed). ``states[(layer, direction)]``:
    the list of per-step ``h_t`` tensors ``[B, H]`` in time order (for a reverse direction,
    step ``t`` of the reversed sequence), ``cells`` the same for LSTM ``c_t``, and
    ``gates[(layer, direction)]``: gate name -> ``[B, T, H]`` (time in the direction's order).
    """

    output: Tensor
    states: dict[tuple[int, int], list[Tensor]] = field(default_factory=dict)
    cells: dict[tuple[int, int], list[Tensor]] = field(default_factory=dict)
    gates: dict[tuple[int, int], dict[str, Tensor]] = field(default_factory=dict)


def unroll(
    rnn: nn.Module, x: Tensor, lengths: Tensor | None = None, keep_gates: bool = True
) -> Unrolled:
    """Replay ``rnn`` (nn.RNN/LSTM/GRU or HandLSTM, any layers and directions) one step at a
    time over ``x`` (``[B, T, input]`` if ``rnn.batch_first`` else ``[T, B, input]``), from
    zero states, without dropout (an evaluation pass; it draws no random numbers).

    With ``lengths``, a reverse direction starts at each sequence's own end, as on a packed
    batch; steps past a sequence's length are computed but mean nothing.
    """
    kind = cell_kind(rnn)
    x = x if rnn.batch_first else x.transpose(0, 1)
    directions = 2 if rnn.bidirectional else 1
    result = Unrolled(output=x)
    for layer in range(rnn.num_layers):
        outputs = []
        for direction in range(directions):
            w = layer_weights(rnn, layer, reverse=direction == 1)
            inputs = reverse_within(x, lengths) if direction else x
            h = x.new_zeros(x.size(0), rnn.hidden_size)
            c = h
            hs, cs, gates = [], [], []
            for t in range(x.size(1)):
                if kind == "lstm":
                    h, c, step_gates = lstm_step(inputs[:, t], h, c, w)
                    cs.append(c)
                elif kind == "gru":
                    h, step_gates = gru_step(inputs[:, t], h, w)
                else:
                    h, step_gates = rnn_step(inputs[:, t], h, w, kind.removeprefix("rnn_")), ()
                hs.append(h)
                if keep_gates:
                    gates.append(step_gates)
            result.states[(layer, direction)] = hs
            if cs:
                result.cells[(layer, direction)] = cs
            if keep_gates and kind in GATE_NAMES:
                result.gates[(layer, direction)] = {
                    name: torch.stack([g[n] for g in gates], dim=1)
                    for n, name in enumerate(GATE_NAMES[kind])
                }
            out = torch.stack(hs, dim=1)
            outputs.append(reverse_within(out, lengths) if direction else out)
        x = outputs[0] if directions == 1 else torch.cat(outputs, dim=-1)
    result.output = x if rnn.batch_first else x.transpose(0, 1)
    return result
