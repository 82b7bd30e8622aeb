"""The native min-RNN layer runs its product and scan by blocks of rows, and keeps its
pre-activation buffer between training steps: blocks that split sequences (and sequences that
span blocks) give the sequential twin's states and gradients, and a buffer is reused only once
nothing else holds it."""

from __future__ import annotations

import pytest
import torch
from native_check import native_runs
from torch import nn
from torch.utils.checkpoint import checkpoint

from seqmodels.layers import native_min_rnn
from seqmodels.layers.min_rnn import MIN_CELLS, MinRNNEncoder

TOL = 1e-10
pytestmark = pytest.mark.usefixtures("one_thread_per_module")


@pytest.fixture
def small_blocks(monkeypatch):
    """Blocks of 16 rows: with 13 steps a sequence, block edges fall inside sequences."""
    monkeypatch.setattr(native_min_rnn, "BLOCK_BYTES", 1)
    assert native_min_rnn._block_rows(12, 8) == 16


def encoder(cell: str, **kwargs) -> MinRNNEncoder:
    torch.manual_seed(0)
    return MinRNNEncoder(cell, 5, 6, num_layers=3, **kwargs).double()


def weighted_sum(out: torch.Tensor) -> torch.Tensor:
    weights = torch.randn(out.shape, dtype=out.dtype, generator=torch.Generator().manual_seed(1))
    return (out * weights).sum()


def grads_of(enc: MinRNNEncoder, x: torch.Tensor, h0: torch.Tensor | None, scan: str | None):
    """Outputs, and the gradients of x, h0 (if given) and every parameter; ``scan=None``: the
    sequential twin (every step its own node of the graph), which starts from zeros."""
    x = x.clone().requires_grad_(True)
    if scan is None:
        out = enc.unroll(x, keep_gates=False).output
        return out, torch.autograd.grad(weighted_sum(out), [x, *enc.parameters()])
    enc.scan = scan
    if h0 is None:
        out = enc(x)
        return out, torch.autograd.grad(weighted_sum(out), [x, *enc.parameters()])
    h0 = h0.clone().requires_grad_(True)
    out, _ = enc.run(x, h0)
    return out, torch.autograd.grad(weighted_sum(out), [x, h0, *enc.parameters()])


@pytest.mark.parametrize("cell", MIN_CELLS)
def test_blocks_that_split_sequences_give_the_sequential_states_and_gradients(
    cell: str, small_blocks
) -> None:
    enc = encoder(cell).eval()
    x = torch.randn(5, 13, 5, dtype=torch.double)  # 65 rows: blocks of 16, the last of 1
    h0 = torch.rand(3, 5, 6, dtype=torch.double) - 0.5  # any sign
    with native_runs():
        out, grads = grads_of(enc, x, h0, "native")
    out_loop, grads_loop = grads_of(enc, x, h0, "loop")
    assert out.abs().max() > 0.1
    torch.testing.assert_close(out, out_loop, rtol=0, atol=TOL)
    for got, ref in zip(grads, grads_loop):
        torch.testing.assert_close(got, ref, rtol=0, atol=TOL)
    # without a gradient (one small buffer for every block), the same states
    enc.scan = "native"
    with torch.inference_mode(), native_runs():
        same, _ = enc.run(x, h0)
    torch.testing.assert_close(same, out.detach(), rtol=0, atol=TOL)


@pytest.mark.parametrize("cell", MIN_CELLS)
def test_blocks_match_the_step_by_step_replay(cell: str, small_blocks) -> None:
    enc = encoder(cell).eval()
    x = torch.randn(4, 13, 5, dtype=torch.double)
    with native_runs():
        out, grads = grads_of(enc, x, None, "native")
    out_s, grads_s = grads_of(enc, x, None, None)
    assert out.abs().max() > 0.1
    torch.testing.assert_close(out, out_s, rtol=0, atol=TOL)
    for got, ref in zip(grads, grads_s):
        torch.testing.assert_close(got, ref, rtol=0, atol=TOL)


@pytest.mark.parametrize("cell", MIN_CELLS)
def test_the_buffer_is_reused_only_when_nothing_else_holds_it(cell: str) -> None:
    enc = encoder(cell, scan="native").train()
    x = torch.randn(2, 9, 5, dtype=torch.double)
    workspace = enc.layers[1][0]._workspace

    def step():
        enc.zero_grad(set_to_none=True)
        enc(x).square().sum().backward()
        return [p.grad.clone() for p in enc.parameters()]

    with native_runs():
        first = step()
        buffer = workspace.buffer
        second = step()
    assert workspace.buffer is buffer  # the backward ran: taken again, not allocated
    for a, b in zip(first, second):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    # a graph kept alive holds its buffer: the next forward takes a new one, and the kept
    # graph's backward still reads its own pre-activations (twice, with retain_graph)
    kept = enc(x).square().sum()
    held = workspace.buffer
    enc(x * 2).square().sum().backward()
    assert workspace.buffer is not held
    enc.zero_grad(set_to_none=True)
    kept.backward(retain_graph=True)
    once = [p.grad.clone() for p in enc.parameters()]
    enc.zero_grad(set_to_none=True)
    kept.backward()
    for a, b, c in zip(first, once, [p.grad for p in enc.parameters()]):
        torch.testing.assert_close(b, a, rtol=0, atol=0)
        torch.testing.assert_close(c, a, rtol=0, atol=0)


def test_copies_and_pickles_of_a_model_start_with_an_empty_workspace() -> None:
    import copy
    import pickle

    enc = encoder("mingru", scan="native").train()
    enc(torch.randn(2, 9, 5, dtype=torch.double)).sum().backward()
    assert enc.layers[0][0]._workspace.buffer is not None
    for clone in (copy.deepcopy(enc), pickle.loads(pickle.dumps(enc))):
        assert clone.layers[0][0]._workspace.buffer is None


@pytest.fixture
def fused_layers(monkeypatch):
    """The cell of each layer the fused inference ran (a spy around the real function)."""
    ran = []
    real = native_min_rnn.infer_stack

    def spy(cell, x2, steps, layers):
        ran.extend([cell] * len(layers))
        return real(cell, x2, steps, layers)

    monkeypatch.setattr(native_min_rnn, "infer_stack", spy)
    return ran


@pytest.mark.parametrize("cell", MIN_CELLS)
@pytest.mark.parametrize("input_size", [5, 6])  # 6: the first layer has a residual too
@pytest.mark.parametrize("residual", [True, False])
@pytest.mark.parametrize("layer_norm", [True, False])
def test_fused_inference_gives_the_layer_by_layer_states(
    cell, input_size, residual, layer_norm, small_blocks, fused_layers
) -> None:
    """Without a gradient, each layer's kernel adds the residual and applies the next
    LayerNorm: the same outputs and carried states as the layer-by-layer path, the caller's
    input untouched, and padding past a length zeroed as before."""
    torch.manual_seed(0)
    enc = MinRNNEncoder(
        cell, input_size, 6, num_layers=3, residual=residual, layer_norm=layer_norm, scan="native"
    ).double()
    x = torch.randn(5, 13, input_size, dtype=torch.double)
    state = torch.rand(3, 5, 6, dtype=torch.double) - 0.5
    lengths = torch.tensor([13, 9, 4, 13, 1])
    with torch.enable_grad():  # a parameter needs a gradient: the layer-by-layer path
        want, want_state = enc.run(x, state)
        want_padded = enc(x, lengths)
    assert not fused_layers
    kept = x.clone()
    with torch.no_grad(), native_runs():
        got, got_state = enc.run(x, state)
        padded = enc(x, lengths)
    assert fused_layers == [cell] * 6
    assert want.abs().max() > 0.1
    torch.testing.assert_close(got, want.detach(), rtol=0, atol=TOL)
    torch.testing.assert_close(got_state, want_state.detach(), rtol=0, atol=TOL)
    torch.testing.assert_close(padded, want_padded.detach(), rtol=0, atol=TOL)
    assert torch.equal(x, kept)


def test_fused_inference_leaves_dropout_and_two_directions_to_the_layer_by_layer_path(
    fused_layers,
) -> None:
    x = torch.randn(2, 7, 5, dtype=torch.double)
    with torch.no_grad():
        encoder("mingru", dropout=0.5, scan="native").train()(x)  # dropout draws: not fused
        encoder("mingru", bidirectional=True, scan="native").eval()(x)
        assert not fused_layers
        encoder("mingru", dropout=0.5, scan="native").eval()(x)  # eval: no dropout
    assert len(fused_layers) == 3


def test_float32_fused_inference_matches_float64() -> None:
    enc = encoder("minlstm", scan="native").eval()
    x = torch.randn(4, 300, 5, dtype=torch.double)
    with torch.no_grad(), native_runs():
        want = enc(x)
        got = enc.float()(x.float())
    torch.testing.assert_close(got.double(), want, rtol=0, atol=1e-5)


def _two_calls_grads(enc: MinRNNEncoder, scan: str, around) -> list[torch.Tensor]:
    """Parameter gradients of one graph that runs the encoder on two inputs, inside
    ``around`` (a context manager, or a function of the graph for checkpoint)."""
    torch.manual_seed(3)
    x1, x2 = torch.randn(2, 9, 5, dtype=torch.double), torch.randn(2, 9, 5, dtype=torch.double)
    enc.scan = scan
    enc.zero_grad(set_to_none=True)

    def graph(a, b):
        return enc(a).square().sum() + (enc(b) * 3).sin().sum()

    loss = around(graph, x1, x2)
    loss.backward()
    return [p.grad.clone() for p in enc.parameters()]


def _hooked(hooks):
    def run(graph, a, b):
        with hooks():
            return graph(a, b)

    return run


@pytest.mark.parametrize(
    "around",
    [
        lambda graph, a, b: graph(a, b),
        _hooked(lambda: torch.autograd.graph.saved_tensors_hooks(lambda t: t, lambda t: t)),
        _hooked(torch.autograd.graph.save_on_cpu),
        lambda graph, a, b: checkpoint(graph, a, b, use_reentrant=False),
    ],
    ids=["plain", "identity-hooks", "save_on_cpu", "checkpoint"],
)
def test_a_buffer_a_saved_tensor_hook_keeps_is_never_taken_again(around) -> None:
    """Hooks may keep the saved pre-activations by a Python reference alone: the second call
    must not write over the first call's buffer before its backward has read it."""
    enc = encoder("mingru").train()
    with native_runs():
        got = _two_calls_grads(enc, "native", around)
    want = _two_calls_grads(enc, "loop", around)
    for a, b in zip(got, want):
        torch.testing.assert_close(a, b, rtol=0, atol=TOL)


def test_one_buffer_serves_batches_of_any_length_and_eval_lets_it_go() -> None:
    enc = encoder("minlstm", scan="native").train()
    workspace = enc.layers[2][0]._workspace
    with native_runs():
        enc(torch.randn(3, 20, 5, dtype=torch.double)).sum().backward()
        storage = workspace.buffer.untyped_storage().data_ptr()
        for steps in (20, 7, 13, 1):  # shorter batches: a view of the same storage
            enc(torch.randn(3, steps, 5, dtype=torch.double)).sum().backward()
            assert workspace.buffer.untyped_storage().data_ptr() == storage
        enc(torch.randn(3, 21, 5, dtype=torch.double)).sum().backward()  # longer: grows
        assert workspace.buffer.numel() == 3 * 21 * 3 * 6
    enc.eval()
    assert workspace.buffer is None


@pytest.mark.parametrize("grad", [True, False])
def test_an_empty_batch_gives_empty_outputs(grad: bool) -> None:
    enc = encoder("mingru", scan="native").eval()
    x = torch.randn(0, 5, 5, dtype=torch.double, requires_grad=grad)
    with torch.set_grad_enabled(grad):
        out = enc(x)
        if grad:
            out.sum().backward()
    assert out.shape == (0, 5, 6)


@pytest.mark.parametrize("where", ["final_norm", "first_norm", "global"])
def test_forward_hooks_keep_the_fused_inference_away(where: str, fused_layers) -> None:
    """The fused inference runs no module: where a hook would run, the layer-by-layer path
    does, and gives what the loop gives with the hook."""
    enc = encoder("mingru", scan="native").eval()
    x = torch.randn(2, 7, 5, dtype=torch.double)
    seen = []

    def double(module, args):  # a pre-hook that changes the input
        seen.append(type(module).__name__)
        return (args[0] * 2,)

    if where == "global":
        handle = torch.nn.modules.module.register_module_forward_pre_hook(
            lambda module, args: seen.append(type(module).__name__)
        )
    else:
        norm = enc.final_norm if where == "final_norm" else enc.norms[0]
        handle = norm.register_forward_pre_hook(double)
    try:
        with torch.no_grad():
            got = enc(x)
            enc.scan = "loop"
            want = enc(x)
    finally:
        handle.remove()
    assert not fused_layers and seen
    torch.testing.assert_close(got, want, rtol=0, atol=TOL)


def test_fused_inference_reads_parameters_that_are_not_contiguous(fused_layers) -> None:
    """A bias or LayerNorm weight that is a strided view (tied or hand-built parameters) gives
    the states the layer-by-layer path gives: the kernel gets contiguous copies."""
    enc = encoder("mingru", scan="native").eval()
    enc.layers[0][0].linear.bias = nn.Parameter(torch.randn(12, 2, dtype=torch.double)[:, 0])
    enc.final_norm.weight = nn.Parameter(torch.randn(6, 3, dtype=torch.double)[:, 1])
    enc.norms[1].bias = nn.Parameter(torch.randn(6, 2, dtype=torch.double)[:, 1])
    x = torch.randn(2, 9, 5, dtype=torch.double)
    with torch.no_grad():
        got, got_state = enc.run(x)
        assert fused_layers == ["mingru"] * 3
        enc.scan = "loop"
        want, want_state = enc.run(x)
    torch.testing.assert_close(got, want, rtol=0, atol=TOL)
    torch.testing.assert_close(got_state, want_state, rtol=0, atol=TOL)
