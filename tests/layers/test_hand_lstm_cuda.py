"""HandLSTM's CUDA layer: its math checked on CPU (eagerly), the compiled path on a GPU."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence

from seqmodels.layers import HandLSTM
from seqmodels.layers.hand_lstm.cuda import cuda_bilstm_layer, cuda_lstm_layer
from seqmodels.layers.hand_lstm.function import lstm_layer

requires_gpu = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


def _layer_inputs(batch_sizes: list[int], dtype=torch.float64, device="cpu"):
    torch.manual_seed(0)
    n_in, hidden, batch = 5, 7, batch_sizes[0]
    make = lambda *shape: torch.randn(*shape, dtype=dtype, device=device, requires_grad=True)  # noqa: E731
    return [
        make(sum(batch_sizes), n_in),
        make(batch, hidden),
        make(batch, hidden),
        make(4 * hidden, n_in),
        make(4 * hidden, hidden),
        make(4 * hidden),
        make(4 * hidden),
    ]


@pytest.mark.parametrize("reverse", [False, True])
@pytest.mark.parametrize("batch_sizes", [[3, 3, 3, 3], [4, 3, 3, 1]], ids=["padded", "packed"])
def test_cuda_layer_math_equals_the_portable_layer(batch_sizes, reverse) -> None:
    """Outputs, final states and every gradient, in float64, eagerly on CPU."""
    inputs = _layer_inputs(batch_sizes)
    ours = cuda_lstm_layer(*inputs, batch_sizes, reverse, compiled=False)
    reference = lstm_layer(*inputs[:7], None, batch_sizes, reverse)
    grads_out = [torch.randn_like(t) for t in reference]
    ours_grads = torch.autograd.grad(ours, inputs, grads_out)
    reference_grads = torch.autograd.grad(reference, inputs, grads_out)
    for a, b in zip(ours, reference):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-12)
    for a, b in zip(ours_grads, reference_grads):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-12)


def test_cuda_layer_passes_gradcheck() -> None:
    inputs = _layer_inputs([3, 2, 2])
    assert torch.autograd.gradcheck(
        lambda *t: cuda_lstm_layer(*t, [3, 2, 2], False, compiled=False), inputs
    )


def test_cuda_layer_second_order_gradients_equal_the_portable_layer() -> None:
    inputs = _layer_inputs([3, 3, 2])
    results = []
    for layer in (
        lambda *t: cuda_lstm_layer(*t, [3, 3, 2], False, compiled=False),
        lambda *t: lstm_layer(*t, None, [3, 3, 2], False),
    ):
        out, h, c = layer(*inputs)
        grads = torch.autograd.grad(out.sum() + h.square().sum(), inputs[:5], create_graph=True)
        penalty = sum(g.square().sum() for g in grads)  # a gradient penalty
        results.append(torch.autograd.grad(penalty, inputs))
    for a, b in zip(*results):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-10)


def _bilayer_inputs(seq_len: int, batch: int, bias: bool = True):
    """``x, h0, c0 [2, B, H]`` and both directions' weights, float64, requiring grad."""
    torch.manual_seed(0)
    n_in, hidden = 5, 7
    make = lambda *shape: torch.randn(*shape, dtype=torch.float64, requires_grad=True)  # noqa: E731
    state = [make(seq_len * batch, n_in), make(2, batch, hidden), make(2, batch, hidden)]
    weights = [
        [make(4 * hidden, n_in), make(4 * hidden, hidden)]
        + ([make(4 * hidden), make(4 * hidden)] if bias else [None, None])
        for _ in range(2)
    ]
    return state, weights


def _two_loops(x, h0, c0, weights, seq_len):
    """The same layer as two separate portable direction loops (the reference)."""
    sizes = [x.size(0) // seq_len] * seq_len
    results = [lstm_layer(x, h0[k], c0[k], *weights[k], None, sizes, k == 1) for k in range(2)]
    out, h, c = zip(*results)
    return torch.cat(out, 1), torch.stack(h), torch.stack(c)


def _leaves(state, weights):
    return [t for t in (*state, *weights[0], *weights[1]) if t is not None]


@pytest.mark.parametrize("bias", [True, False])
def test_both_directions_in_one_loop_equal_two_loops(bias: bool) -> None:
    """cuda_bilstm_layer's math (eagerly, float64, CPU): outputs and every gradient."""
    seq_len = 6
    state, weights = _bilayer_inputs(seq_len, 3, bias)
    ours = cuda_bilstm_layer(*state, *weights, seq_len, compiled=False)
    reference = _two_loops(*state, weights, seq_len)
    grads_out = [torch.randn_like(t) for t in reference]
    leaves = _leaves(state, weights)
    for a, b in zip(ours, reference):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-12)
    ours_grads = torch.autograd.grad(ours, leaves, grads_out)
    reference_grads = torch.autograd.grad(reference, leaves, grads_out)
    for a, b in zip(ours_grads, reference_grads):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-12)


def test_both_directions_in_one_loop_pass_gradcheck() -> None:
    state, weights = _bilayer_inputs(4, 2)
    leaves = _leaves(state, weights)

    def layer(*t):
        return cuda_bilstm_layer(t[0], t[1], t[2], t[3:7], t[7:11], 4, compiled=False)

    assert torch.autograd.gradcheck(layer, leaves)


def test_both_directions_in_one_loop_second_order_and_vmap_equal_two_loops() -> None:
    seq_len = 4
    state, weights = _bilayer_inputs(seq_len, 2)
    leaves = _leaves(state, weights)
    results = []
    for run in (
        lambda: cuda_bilstm_layer(*state, *weights, seq_len, compiled=False),
        lambda: _two_loops(*state, weights, seq_len),
    ):
        out, h, c = run()
        grads = torch.autograd.grad(
            out.square().sum() + h.sum() + c.sum(), leaves[:5], create_graph=True
        )
        penalty = sum(g.square().sum() for g in grads)  # a gradient penalty
        second = torch.autograd.grad(penalty, leaves)
        out, h, c = run()
        basis = torch.eye(out.numel(), dtype=out.dtype)[:3].view(3, *out.shape)
        batched = torch.autograd.grad(out, state[0], basis, is_grads_batched=True)[0]
        results.append([*second, batched])
    for a, b in zip(*results):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-10)


def _pair(device: str, **kwargs):
    torch.manual_seed(1)
    reference = nn.LSTM(16, 32, device=device, **kwargs)
    hand = HandLSTM(16, 32, device=device, **kwargs)
    hand.load_state_dict(reference.state_dict())
    return reference, hand


@requires_gpu
@pytest.mark.parametrize("bidirectional", [False, True])
@pytest.mark.parametrize("num_layers", [1, 2])
def test_hand_lstm_on_cuda_matches_cudnn(num_layers: int, bidirectional: bool) -> None:
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    reference, hand = _pair("cuda", num_layers=num_layers, bidirectional=bidirectional)
    x = torch.randn(20, 6, 16, device="cuda")
    results = []
    for model in (reference, hand):
        xi = x.clone().requires_grad_()
        out, (h, c) = model(xi)
        (out.square().sum() + h.sum() + c.sum()).backward()
        results.append([out, h, c, xi.grad, *(p.grad for p in model.parameters())])
    for a, b in zip(*results):  # float32 rounding over 2 layers x 20 steps: ~1e-5 in a few
        torch.testing.assert_close(b, a, rtol=1e-4, atol=5e-5)
    if bidirectional:  # equal lengths: both directions ran in one loop
        assert "CudaBiLSTMLayerBackward" in _node_names(hand(x.requires_grad_())[0].grad_fn)


def _node_names(node) -> set[str]:
    """The class names of every autograd node behind ``node``."""
    seen, stack = {}, [node]
    while stack:
        node = stack.pop()
        if node is not None and id(node) not in seen:
            seen[id(node)] = type(node).__name__
            stack.extend(next_node for next_node, _ in node.next_functions)
    return set(seen.values())


@requires_gpu
def test_hand_lstm_on_cuda_packed_matches_cudnn() -> None:
    reference, hand = _pair("cuda", bidirectional=True)
    x = torch.randn(5, 10, 16, device="cuda")
    lengths = torch.tensor([10, 9, 4, 4, 1])
    outs = []
    for model in (reference, hand):
        packed = pack_padded_sequence(x, lengths, batch_first=True, enforce_sorted=False)
        out, (h, c) = model(packed)
        (out.data.sum() + h.square().sum() + c.sum()).backward()
        outs.append([out.data, h, c, *(p.grad for p in model.parameters())])
    for a, b in zip(*outs):
        torch.testing.assert_close(b, a, rtol=1e-4, atol=1e-5)


@requires_gpu
@pytest.mark.parametrize("bidirectional", [False, True])
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_hand_lstm_on_cuda_under_autocast_matches_cudnn(
    dtype: torch.dtype, bidirectional: bool
) -> None:
    reference, hand = _pair("cuda", num_layers=2, bidirectional=bidirectional)
    x = torch.randn(30, 8, 16, device="cuda")
    outs = []
    for model in (reference, hand):
        with torch.autocast("cuda", dtype=dtype):
            out, (h, c) = model(x)
        out.float().sum().backward()
        outs.append([out, h, c, model.weight_ih_l0.grad])
    # cuDNN's LSTM runs in float16 under autocast whichever dtype autocast asks for (seen with
    # torch 2.11 on an H200); HandLSTM runs in the dtype asked for.
    assert all(t.dtype == dtype for t in outs[1][:3])
    for a, b in zip(*outs):
        scale = a.float().abs().max().clamp(min=1)
        assert (b.float() - a.float()).abs().max() / scale < 3e-2


def test_compiled_steps_take_every_dtype_and_layout_of_one_process() -> None:
    """The fused steps, compiled (on CPU here), in 3 dtypes x packed/padded x both directions.

    Dynamo compiles a variant per dtype and row-slice layout; past its default recompile
    limit (8) a fullgraph function raises, which a run mixing precisions used to hit on the
    GPU. Each result equals the same functions run eagerly.
    """
    for dtype in (torch.float32, torch.float64, torch.bfloat16):
        for sizes in ([3, 3, 3], [3, 2, 1]):
            for reverse in (False, True):
                inputs = [t.detach().to(dtype).requires_grad_() for t in _layer_inputs(sizes)]
                results = []
                for compiled in (True, False):
                    out, h, c = cuda_lstm_layer(*inputs, sizes, reverse, compiled=compiled)
                    loss = out.float().square().sum() + h.float().sum() + c.float().sum()
                    results.append([out, h, c, *torch.autograd.grad(loss, inputs)])
                tolerance = {"rtol": 2e-2, "atol": 2e-2} if dtype == torch.bfloat16 else {}
                for a, b in zip(*results):
                    torch.testing.assert_close(a, b, **tolerance)
    state, weights = _bilayer_inputs(3, 2)
    outs = [cuda_bilstm_layer(*state, *weights, 3, compiled=c) for c in (True, False)]
    for a, b in zip(*outs):
        torch.testing.assert_close(a, b)
