"""The plain reference step and layer: against nn.LSTM, and the fast paths against them."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from seqmodels.layers.hand_lstm.function import lstm_layer, lstm_layer_reference, reference_step

F64 = torch.float64
pytestmark = pytest.mark.usefixtures("one_thread_per_module")


@pytest.mark.parametrize("bias", [True, False])
def test_reference_step_is_nn_lstm_cell(bias):
    torch.manual_seed(0)
    cell = nn.LSTMCell(5, 7, bias=bias, dtype=F64)
    x, h, c = (
        torch.randn(3, 5, dtype=F64),
        torch.randn(3, 7, dtype=F64),
        torch.randn(3, 7, dtype=F64),
    )
    b = cell.bias_ih + cell.bias_hh if bias else None
    expected = cell(x, (h, c))
    actual = reference_step(x, h, c, cell.weight_ih, cell.weight_hh, b)
    for e, a in zip(expected, actual, strict=True):
        torch.testing.assert_close(a, e, atol=1e-12, rtol=0)


def _layer_args(batch_sizes, proj, dtype, seed=0):
    torch.manual_seed(seed)
    hidden, size, n_in = 4, 3 if proj else 4, 5
    batch, rows = batch_sizes[0], sum(batch_sizes)

    def rand(*shape):
        return torch.randn(*shape, dtype=dtype)

    return (
        rand(rows, n_in),
        rand(batch, size),
        rand(batch, hidden),
        rand(4 * hidden, n_in),
        rand(4 * hidden, size),
        rand(4 * hidden),
        rand(4 * hidden),
        rand(size, hidden) if proj else None,
    )


@pytest.mark.parametrize("proj", [False, True])
@pytest.mark.parametrize("reverse", [False, True])
def test_reference_layer_is_nn_lstm_on_packed_rows(proj, reverse):
    """A packed batch (lengths 4, 3, 1) through one direction of a bidirectional nn.LSTM."""
    batch_sizes = [3, 2, 2, 1]
    x, h0, c0, w_ih, w_hh, b_ih, b_hh, w_hr = _layer_args(batch_sizes, proj, F64)
    lstm = nn.LSTM(5, 4, bidirectional=True, proj_size=3 if proj else 0, dtype=F64)
    suffix = "_l0_reverse" if reverse else "_l0"
    weights = {"weight_ih": w_ih, "weight_hh": w_hh, "bias_ih": b_ih, "bias_hh": b_hh}
    if proj:
        weights["weight_hr"] = w_hr
    with torch.no_grad():
        for name, value in weights.items():
            getattr(lstm, name + suffix).copy_(value)
    packed = nn.utils.rnn.PackedSequence(x, torch.tensor(batch_sizes))
    k = 1 if reverse else 0
    states = torch.stack([h0, h0]), torch.stack([c0, c0])
    out, (h_n, c_n) = lstm(packed, states)
    width = out.data.size(1) // 2
    expected = out.data[:, k * width : (k + 1) * width], h_n[k], c_n[k]
    actual = lstm_layer_reference(x, h0, c0, w_ih, w_hh, b_ih, b_hh, w_hr, batch_sizes, reverse)
    for e, a in zip(expected, actual, strict=True):
        torch.testing.assert_close(a, e, atol=1e-12, rtol=0)


@pytest.mark.parametrize("dtype,atol", [(F64, 1e-12), (torch.float32, 1e-5)])
@pytest.mark.parametrize("proj", [False, True])
@pytest.mark.parametrize("reverse", [False, True])
@pytest.mark.parametrize("grad", [False, True])
def test_fast_layer_matches_reference(dtype, atol, proj, reverse, grad):
    """The fast recurrence (oneDNN fused sigmoid, doubled g rows, in float32) and its hand
    BPTT against the plain reference and autograd."""
    batch_sizes = [3, 3, 2, 1, 1]
    args = _layer_args(batch_sizes, proj, dtype)
    results = []
    for layer in (lstm_layer_reference, lstm_layer):
        leaves = [a.clone().requires_grad_(grad) if a is not None else None for a in args]
        outs = layer(*leaves, batch_sizes, reverse)
        if grad:
            gen = torch.Generator().manual_seed(1)
            loss = sum((o * torch.randn(o.shape, generator=gen, dtype=dtype)).sum() for o in outs)
            outs = [*outs, *torch.autograd.grad(loss, [a for a in leaves if a is not None])]
        results.append(outs)
    for e, a in zip(*results, strict=True):
        torch.testing.assert_close(a, e, atol=atol, rtol=0)


@pytest.mark.parametrize("threads", [1, 2])
def test_fast_layer_matches_reference_with_one_and_two_threads(threads):
    """tanh(c) is ATen's tanh on one thread and 2 σ(2c) - 1 on several (_tanh)."""
    batch_sizes = [64, 64, 30]
    args = _layer_args(batch_sizes, False, torch.float32)
    expected = lstm_layer_reference(*args, batch_sizes)
    torch.set_num_threads(threads)
    try:
        actual = lstm_layer(*args, batch_sizes)
    finally:
        torch.set_num_threads(1)
    for e, a in zip(expected, actual, strict=True):
        torch.testing.assert_close(a, e, atol=1e-5, rtol=0)
