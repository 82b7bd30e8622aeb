"""Second-order gradients (create_graph=True) of HandLSTM / HandLSTMCell against nn.LSTM."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.nn.utils.rnn import PackedSequence, pack_padded_sequence

from seqmodels.layers import HandLSTM, HandLSTMCell
from seqmodels.layers.hand_lstm.function import LSTMLayerFunction

IN, H, T, B = 3, 4, 5, 3
F64 = torch.float64
pytestmark = [
    pytest.mark.filterwarnings("ignore:LSTM with projections is not supported"),
    pytest.mark.usefixtures("one_thread_per_module"),
]


def _gradient_penalty_grads(model, x, hx, packed):
    """d/dθ of ||d loss/d(x, θ)||² (a WGAN-GP / meta-learning style second derivative)."""
    x = x.clone().requires_grad_()
    inputs = pack_padded_sequence(x, torch.tensor([5, 3, 2])) if packed else x
    out, (h, c) = model(inputs, hx) if hx is not None else model(inputs)
    out = out.data if isinstance(out, PackedSequence) else out
    weights = torch.linspace(-1, 1, h.size(-1), dtype=F64, device=h.device)
    loss = (out**2).sum() + (h * weights).sum() + c.sum()
    leaves = [x, *(hx or ()), *model.parameters()]
    first = torch.autograd.grad(loss, leaves, create_graph=True)
    penalty = sum((g**2).sum() for g in first)
    return [*first, *torch.autograd.grad(penalty, leaves)]


@pytest.mark.parametrize("num_layers,bidirectional,proj_size", [(1, False, 0), (2, True, 2)])
@pytest.mark.parametrize("packed", [False, True])
@pytest.mark.parametrize("given_state", [False, True])
def test_second_order_gradients_match_nn_lstm(
    num_layers, bidirectional, proj_size, packed, given_state
):
    kwargs = dict(num_layers=num_layers, bidirectional=bidirectional, proj_size=proj_size)
    torch.manual_seed(0)
    ref = nn.LSTM(IN, H, dtype=F64, **kwargs)
    hand = HandLSTM(IN, H, dtype=F64, **kwargs)
    hand.load_state_dict(ref.state_dict())
    x = torch.randn(T, B, IN, dtype=F64)
    hx = None
    if given_state:
        layers = num_layers * (2 if bidirectional else 1)
        hx = tuple(
            torch.randn(layers, B, s, dtype=F64, requires_grad=True) for s in (proj_size or H, H)
        )
    expected = _gradient_penalty_grads(ref, x, hx, packed)
    actual = _gradient_penalty_grads(hand, x, hx, packed)
    for e, a in zip(expected, actual, strict=True):
        torch.testing.assert_close(a, e, atol=1e-10, rtol=0)


def test_cell_second_order_gradients_match_nn_lstm_cell():
    torch.manual_seed(0)
    ref, hand = nn.LSTMCell(IN, H, dtype=F64), HandLSTMCell(IN, H, dtype=F64)
    hand.load_state_dict(ref.state_dict())
    x = torch.randn(B, IN, dtype=F64, requires_grad=True)
    hx = tuple(torch.randn(B, H, dtype=F64, requires_grad=True) for _ in range(2))
    results = []
    for model in (ref, hand):
        h, c = model(x, hx)
        leaves = [x, *hx, *model.parameters()]
        first = torch.autograd.grad((h**2).sum() + c.sum(), leaves, create_graph=True)
        penalty = sum((g**3).sum() for g in first)
        results.append([*first, *torch.autograd.grad(penalty, leaves)])
    for e, a in zip(*results, strict=True):
        torch.testing.assert_close(a, e, atol=1e-10, rtol=0)


def test_allow_unused_second_grad_is_not_silently_empty():
    """The first gradient depends on the weights, so the second must not come back None."""
    torch.manual_seed(0)
    results = []
    for cls in (nn.LSTM, HandLSTM):
        torch.manual_seed(0)
        model = cls(IN, H, dtype=F64)
        x = torch.randn(T, B, IN, dtype=F64, requires_grad=True)
        (g_x,) = torch.autograd.grad(model(x)[0].pow(2).sum(), x, create_graph=True)
        assert g_x.requires_grad
        grads = torch.autograd.grad(g_x.sum(), list(model.parameters()), allow_unused=True)
        assert all(g is not None for g in grads)
        results.append(grads)
    for e, a in zip(*results, strict=True):
        torch.testing.assert_close(a, e, atol=1e-10, rtol=0)


def test_first_order_backward_keeps_the_hand_written_path():
    """Without create_graph the gradients come from the hand BPTT (not differentiable again)."""
    model = HandLSTM(IN, H, dtype=F64)
    x = torch.randn(T, B, IN, dtype=F64, requires_grad=True)
    (g_x,) = torch.autograd.grad(model(x)[0].sum(), x)
    assert g_x.grad_fn is None
    (g_x,) = torch.autograd.grad(model(x)[0].sum(), x, create_graph=True)
    assert g_x.grad_fn is not None


@pytest.mark.parametrize("proj", [False, True])
@pytest.mark.parametrize(
    "batch_sizes,reverse", [([3, 3], False), ([3, 2, 1], False), ([3, 2, 1], True)]
)
def test_gradgradcheck_layer_function(proj, batch_sizes, reverse):
    torch.manual_seed(0)
    hidden, size, batch, rows = 2, 1 if proj else 2, batch_sizes[0], sum(batch_sizes)

    def rand(*shape):
        return torch.randn(*shape, dtype=F64, requires_grad=True)

    args = (
        rand(rows, 2),
        rand(batch, size),
        rand(batch, hidden),
        rand(4 * hidden, 2),
        rand(4 * hidden, size),
        rand(4 * hidden),
        rand(4 * hidden),
        rand(size, hidden) if proj else None,
    )
    fn = lambda *a: LSTMLayerFunction.apply(*a, batch_sizes, reverse)  # noqa: E731
    assert torch.autograd.gradgradcheck(fn, args, check_batched_grad=True)


def test_gradgradcheck_cell():
    torch.manual_seed(0)
    cell = HandLSTMCell(2, 2, dtype=F64)
    x = torch.randn(2, 2, dtype=F64, requires_grad=True)
    hx = tuple(torch.randn(2, 2, dtype=F64, requires_grad=True) for _ in range(2))

    def fn(x, h, c, *weights):
        params = dict(zip(["weight_ih", "weight_hh", "bias_ih", "bias_hh"], weights, strict=True))
        return torch.func.functional_call(cell, params, (x, (h, c)))

    assert torch.autograd.gradgradcheck(fn, (x, *hx, *cell.parameters()), check_batched_grad=True)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device on this machine")
def test_second_order_gradients_on_cuda_match_nn_lstm_without_cudnn():
    """cuDNN's LSTM has no double backward, so nn.LSTM runs ATen's decomposition here."""
    kwargs = dict(num_layers=2, bidirectional=True, dtype=F64, device="cuda")
    torch.manual_seed(0)
    ref, hand = nn.LSTM(IN, H, **kwargs), HandLSTM(IN, H, **kwargs)
    hand.load_state_dict(ref.state_dict())
    x = torch.randn(T, B, IN, dtype=F64, device="cuda")
    with torch.backends.cudnn.flags(enabled=False):
        expected = _gradient_penalty_grads(ref, x, None, packed=True)
    actual = _gradient_penalty_grads(hand, x, None, packed=True)
    for e, a in zip(expected, actual, strict=True):
        torch.testing.assert_close(a, e, atol=1e-10, rtol=0)
