"""HandLSTM / HandLSTMCell against torch.nn.LSTM / nn.LSTMCell: values, gradients, errors."""

from __future__ import annotations

import importlib.util
import itertools
import platform
import warnings
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from torch import nn
from torch.nn.utils.rnn import PackedSequence, pack_padded_sequence

from seqmodels.layers import HandLSTM, HandLSTMCell
from seqmodels.layers.hand_lstm.function import INPUT_CHUNK, LSTMLayerFunction
from seqmodels.layers.hand_lstm.kernels import _onednn_usable

IN, H, T, B = 5, 7, 6, 4
LENGTHS = [6, 2, 5, 3]  # unsorted, unequal
F64 = torch.float64
pytestmark = [
    pytest.mark.filterwarnings("ignore:LSTM with projections is not supported"),
    pytest.mark.usefixtures("one_thread_per_module"),
]


def _pair(seed: int = 0, cls: type = nn.LSTM, hand: type = HandLSTM, **kwargs):
    """A torch module and a hand module built from the same seed."""
    torch.manual_seed(seed)
    ref = cls(IN, H, **kwargs)
    torch.manual_seed(seed)
    return ref, hand(IN, H, **kwargs)


def _outputs_and_grads(model, inputs, hx, weights_seed: int = 1):
    """Everything a comparison needs: outputs, final states and all gradients."""
    out, (h, c) = model(inputs, hx) if hx is not None else model(inputs)
    out_data = out.data if isinstance(out, PackedSequence) else out
    results = [out_data, h, c]
    gen = torch.Generator().manual_seed(weights_seed)
    loss = sum((t * torch.randn(t.shape, generator=gen, dtype=t.dtype)).sum() for t in results)
    leaves = [inputs.data if isinstance(inputs, PackedSequence) else inputs]
    leaves += list(hx or ()) + list(model.parameters())
    return results + list(torch.autograd.grad(loss, leaves))


def _assert_all_close(expected, actual, atol=1e-10):
    assert len(expected) == len(actual)
    for e, a in zip(expected, actual, strict=True):
        assert e.shape == a.shape
        torch.testing.assert_close(a, e, atol=atol, rtol=0)


COMBINATIONS = list(
    itertools.product(
        [1, 2, 3], [False, True], [False, True], [None, "unsorted", "sorted"], [0, 3], [0, 1]
    )
)


def _compare_with_nn_lstm(
    num_layers, bidirectional, batch_first, packing, proj_size, given_state, dtype, atol
):
    kwargs = dict(num_layers=num_layers, bidirectional=bidirectional, batch_first=batch_first)
    ref, hand = _pair(proj_size=proj_size, dtype=dtype, **kwargs)
    torch.manual_seed(2)
    x = torch.randn((B, T, IN) if batch_first else (T, B, IN), dtype=dtype)
    hx = None
    if given_state:
        layers = num_layers * (2 if bidirectional else 1)
        hx = tuple(
            torch.randn(layers, B, size, dtype=dtype, requires_grad=True)
            for size in (proj_size or H, H)
        )
    results = []
    for model in (ref, hand):
        inputs = x.clone().requires_grad_()
        if packing is not None:
            lengths = sorted(LENGTHS, reverse=True) if packing == "sorted" else LENGTHS
            inputs = pack_padded_sequence(
                inputs, torch.tensor(lengths), batch_first, enforce_sorted=packing == "sorted"
            )
        results.append(_outputs_and_grads(model, inputs, hx))
    _assert_all_close(*results, atol=atol)


ARGS = "num_layers,bidirectional,batch_first,packing,proj_size,given_state"


@pytest.mark.parametrize(ARGS, COMBINATIONS)
def test_matches_nn_lstm_float64(
    num_layers, bidirectional, batch_first, packing, proj_size, given_state
):
    """float64 runs the portable path (torch.mm); agreement to rounding."""
    args = num_layers, bidirectional, batch_first, packing, proj_size, given_state
    _compare_with_nn_lstm(*args, dtype=F64, atol=1e-10)


@pytest.mark.parametrize(ARGS, COMBINATIONS)
def test_matches_nn_lstm_float32(
    num_layers, bidirectional, batch_first, packing, proj_size, given_state
):
    """float32 on CPU runs the oneDNN path (prepacked weights, fused sigmoid): atol 1e-5."""
    args = num_layers, bidirectional, batch_first, packing, proj_size, given_state
    _compare_with_nn_lstm(*args, dtype=torch.float32, atol=1e-5)


NO_TF32_WARNING = pytest.mark.filterwarnings("ignore:TF32 acceleration on top of oneDNN")


@NO_TF32_WARNING
def test_onednn_path_is_switched_by_torch_flag():
    weight = torch.randn(8, 4)
    x86_64 = platform.machine().lower() in ("x86_64", "amd64")
    assert _onednn_usable(weight) == (torch.backends.mkldnn.is_available() and x86_64)
    assert not _onednn_usable(weight.double())
    with torch.backends.mkldnn.flags(enabled=False):
        assert not _onednn_usable(weight)


@NO_TF32_WARNING
@pytest.mark.parametrize("packing", [None, "unsorted"])
@pytest.mark.parametrize("proj_size", [0, 3])
def test_matches_nn_lstm_float32_without_onednn(packing, proj_size):
    """With oneDNN switched off the per-step product falls back to torch.addmm: same results."""
    with torch.backends.mkldnn.flags(enabled=False):
        _compare_with_nn_lstm(2, True, False, packing, proj_size, 1, torch.float32, atol=1e-5)


def test_float32_without_bias_matches_at_1e5():
    ref, hand = _pair(num_layers=2, bidirectional=True, bias=False)
    assert [n for n, _ in hand.named_parameters()] == [n for n, _ in ref.named_parameters()]
    x = torch.randn(T, B, IN, requires_grad=True)
    _assert_all_close(_outputs_and_grads(ref, x, None), _outputs_and_grads(hand, x, None), 1e-5)


@pytest.mark.parametrize("proj_size", [0, 3])
def test_parameters_names_shapes_and_seeded_init_equal_nn_lstm(proj_size):
    ref, hand = _pair(num_layers=2, bidirectional=True, proj_size=proj_size)
    ref_params, hand_params = list(ref.named_parameters()), list(hand.named_parameters())
    assert [n for n, _ in hand_params] == [n for n, _ in ref_params]
    for (_, r), (_, h) in zip(ref_params, hand_params, strict=True):
        assert torch.equal(r, h)
    assert [[p.shape for p in ws] for ws in hand.all_weights] == [
        [p.shape for p in ws] for ws in ref.all_weights
    ]
    assert repr(hand).replace("HandLSTM", "LSTM") == repr(ref)


def test_load_state_dict_both_ways():
    kwargs = dict(num_layers=2, bidirectional=True, proj_size=3)
    torch.manual_seed(0)
    ref, hand = nn.LSTM(IN, H, **kwargs), HandLSTM(IN, H, **kwargs)
    hand.load_state_dict(ref.state_dict())
    x = torch.randn(T, B, IN)
    torch.testing.assert_close(hand(x)[0], ref(x)[0], atol=1e-5, rtol=0)
    other = nn.LSTM(IN, H, **kwargs)
    other.load_state_dict(hand.state_dict())
    torch.testing.assert_close(other(x)[0], hand(x)[0], atol=1e-5, rtol=0)


@pytest.mark.parametrize("batch_first", [False, True])
@pytest.mark.parametrize("given_state", [False, True])
def test_unbatched_input(batch_first, given_state):
    ref, hand = _pair(num_layers=2, bidirectional=True, batch_first=batch_first, dtype=F64)
    x = torch.randn(T, IN, dtype=F64, requires_grad=True)
    hx = tuple(torch.randn(4, H, dtype=F64, requires_grad=True) for _ in range(2))
    hx = hx if given_state else None
    _assert_all_close(_outputs_and_grads(ref, x, hx), _outputs_and_grads(hand, x, hx))
    assert hand(x)[0].shape == (T, 2 * H)


def test_dropout_only_between_layers_and_only_in_training():
    ref, hand = _pair(num_layers=3, dropout=0.5, dtype=F64)
    x = torch.randn(T, B, IN, dtype=F64, requires_grad=True)
    ref.eval(), hand.eval()
    _assert_all_close(_outputs_and_grads(ref, x, None), _outputs_and_grads(hand, x, None))
    hand.train()
    torch.manual_seed(3)
    trained = hand(x)[0]
    assert not torch.allclose(trained, hand.eval()(x)[0])
    trained.sum().backward()  # dropout masks are differentiable around the Function

    ref, hand = _pair(num_layers=3, dropout=0.0, dtype=F64)  # training mode, no dropout
    _assert_all_close(_outputs_and_grads(ref, x, None), _outputs_and_grads(hand, x, None))

    with pytest.warns(UserWarning, match="non-zero dropout expects num_layers greater than 1"):
        single = HandLSTM(IN, H, dropout=0.5, dtype=F64)
    torch.testing.assert_close(single.train()(x)[0], single.eval()(x)[0])  # nothing to drop


@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("shape", [(B, IN), (IN,)])
@pytest.mark.parametrize("given_state", [False, True])
def test_cell_matches_nn_lstm_cell(bias, shape, given_state):
    ref, hand = _pair(cls=nn.LSTMCell, hand=HandLSTMCell, bias=bias, dtype=F64)
    assert [n for n, _ in hand.named_parameters()] == [n for n, _ in ref.named_parameters()]
    x = torch.randn(shape, dtype=F64, requires_grad=True)
    state_shape = (B, H) if len(shape) == 2 else (H,)
    hx = tuple(torch.randn(state_shape, dtype=F64, requires_grad=True) for _ in range(2))
    hx = hx if given_state else None
    results = []
    for model in (ref, hand):
        h, c = model(x, hx)
        loss = (h * torch.arange(H, dtype=F64)).sum() + (c * c).sum()
        results.append([h, c, *torch.autograd.grad(loss, [x, *(hx or ()), *model.parameters()])])
    _assert_all_close(*results)


def test_cell_loop_equals_whole_sequence():
    torch.manual_seed(0)
    lstm = HandLSTM(IN, H, dtype=F64)
    cell = HandLSTMCell(IN, H, dtype=F64)
    cell.load_state_dict({k[: -len("_l0")]: v for k, v in lstm.state_dict().items()})
    x = torch.randn(T, B, IN, dtype=F64)
    h, c = torch.randn(B, H, dtype=F64), torch.randn(B, H, dtype=F64)
    out, (h_n, c_n) = lstm(x, (h[None], c[None]))
    steps = []
    for x_t in x:
        h, c = cell(x_t, (h, c))
        steps.append(h)
    _assert_all_close([out, h_n[0], c_n[0]], [torch.stack(steps), h, c])


@pytest.mark.parametrize("proj", [False, True])
@pytest.mark.parametrize("batch_sizes", [[3, 3, 3], [3, 3, 2, 1]])
@pytest.mark.parametrize("reverse", [False, True])
def test_gradcheck_layer_function(proj, batch_sizes, reverse):
    torch.manual_seed(0)
    hidden, size, batch, rows = 3, 2 if proj else 3, batch_sizes[0], sum(batch_sizes)

    def rand(*shape):
        return torch.randn(*shape, dtype=F64, requires_grad=True)

    args = (
        rand(rows, 2),  # x
        rand(batch, size),  # h0
        rand(batch, hidden),  # c0
        rand(4 * hidden, 2),  # w_ih
        rand(4 * hidden, size),  # w_hh
        rand(4 * hidden),  # b_ih
        rand(4 * hidden),  # b_hh
        rand(size, hidden) if proj else None,  # w_hr
    )
    fn = lambda *a: LSTMLayerFunction.apply(*a, batch_sizes, reverse)  # noqa: E731
    assert torch.autograd.gradcheck(fn, args, check_batched_grad=True)


def test_backward_is_the_hand_written_function_not_autograd_over_the_loop():
    def graph_nodes(seq_len: int) -> list[str]:
        torch.manual_seed(0)
        out, (h, c) = HandLSTM(IN, H)(torch.randn(seq_len, B, IN, requires_grad=True))
        seen, todo = [], [out.grad_fn]
        while todo:
            node = todo.pop()
            if node is not None and node.name() not in seen:
                seen.append(node.name())
                todo.extend(n for n, _ in node.next_functions)
        return seen

    short, long = graph_nodes(2), graph_nodes(50)
    assert "LSTMLayerFunctionBackward" in short
    assert sorted(short) == sorted(long)  # graph size does not grow with the sequence
    assert len(short) < 10


def test_no_grad_keeps_no_graph_and_same_values():
    torch.manual_seed(0)
    model = HandLSTM(IN, H, num_layers=2, bidirectional=True)
    x = torch.randn(T, B, IN)
    expected = model(x)[0]
    for context in (torch.no_grad, torch.inference_mode):
        with context():
            out, (h, c) = model(x)
        assert out.grad_fn is None and h.grad_fn is None
        torch.testing.assert_close(out, expected)


@pytest.mark.parametrize("dtype,atol", [(F64, 1e-12), (torch.float32, 1e-5)])
@pytest.mark.parametrize("packed", [False, True])
@pytest.mark.parametrize("bias,proj_size", [(True, 0), (False, 0), (True, 3)])
def test_inference_loop_matches_nn_lstm_and_the_training_path(dtype, atol, packed, bias, proj_size):
    """Without autograd, the loop that runs the input products a chunk of steps at a time
    (over two whole chunks and a partial one, sequences ending inside chunks) gives nn.LSTM's
    outputs and states, and those of HandLSTM's training path."""
    steps = 2 * INPUT_CHUNK + 3
    kwargs = dict(num_layers=2, bidirectional=True, bias=bias, proj_size=proj_size, dtype=dtype)
    ref, hand = _pair(**kwargs)
    torch.manual_seed(3)
    x = torch.randn(steps, B, IN, dtype=dtype)
    hx = (torch.randn(4, B, proj_size or H, dtype=dtype), torch.randn(4, B, H, dtype=dtype))
    lengths = torch.tensor([INPUT_CHUNK + 1, steps, 2, steps - 1])
    inputs = pack_padded_sequence(x, lengths, enforce_sorted=False) if packed else x

    def run(model: nn.Module) -> list[torch.Tensor]:
        out, (h, c) = model(inputs, hx)
        return [out.data if packed else out, h, c]

    training = run(hand.requires_grad_())
    assert training[0].grad_fn is not None
    for context in (torch.no_grad, torch.inference_mode):
        with context():
            expected, inferred = run(ref), run(hand)
        assert inferred[0].grad_fn is None
        _assert_all_close(expected, inferred, atol=atol)
        _assert_all_close([t.detach() for t in training], inferred, atol=atol)


def test_bf16_autocast_does_not_crash():
    _, hand = _pair(num_layers=2, bidirectional=True)
    _, cell = _pair(cls=nn.LSTMCell, hand=HandLSTMCell)
    x = torch.randn(T, B, IN, requires_grad=True)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out, (h, c) = hand(x)
        h1, c1 = cell(x[0])
    assert out.dtype == torch.bfloat16 and out.shape == (T, B, 2 * H)
    (out.float().sum() + h1.sum()).backward()
    assert x.grad is not None and hand.weight_ih_l0.grad.dtype == torch.float32


def _error(fn: Callable[[], object]) -> tuple[type, str]:
    with pytest.raises(Exception) as info:  # noqa: B017 - compared to nn's exception below
        fn()
    return type(info.value), str(info.value)


def _randn(*shape: int, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    return torch.randn(*shape, dtype=dtype)


def _packed_wrong_size():
    return pack_padded_sequence(_randn(T, B, IN + 1), torch.tensor(LENGTHS), enforce_sorted=False)


LSTM_ERRORS = {
    "input size": ({}, lambda m: m(_randn(T, B, IN + 1))),
    "input size batch_first": ({"batch_first": True}, lambda m: m(_randn(B, T, IN + 1))),
    "input size packed": ({}, lambda m: m(_packed_wrong_size())),
    "4-D input": ({}, lambda m: m(_randn(T, B, IN, 1))),
    "1-D input": ({}, lambda m: m(_randn(IN))),
    "empty sequence": ({}, lambda m: m(_randn(0, B, IN))),
    "empty unbatched": ({}, lambda m: m(_randn(0, IN))),
    "empty batch_first": ({"batch_first": True}, lambda m: m(_randn(B, 0, IN))),
    "h batch": ({}, lambda m: m(_randn(T, B, IN), (_randn(1, 2, H), _randn(1, B, H)))),
    "c batch": ({}, lambda m: m(_randn(T, B, IN), (_randn(1, B, H), _randn(1, 2, H)))),
    "h size": ({}, lambda m: m(_randn(T, B, IN), (_randn(1, B, H + 1), _randn(1, B, H)))),
    "h layers": ({}, lambda m: m(_randn(T, B, IN), (_randn(2, B, H), _randn(1, B, H)))),
    "proj h": ({"proj_size": 3}, lambda m: m(_randn(T, B, IN), (_randn(1, B, H), _randn(1, B, H)))),
    "proj c": ({"proj_size": 3}, lambda m: m(_randn(T, B, IN), (_randn(1, B, 3), _randn(1, B, 3)))),
    "2-D hx, batched": ({}, lambda m: m(_randn(T, B, IN), (_randn(B, H), _randn(1, B, H)))),
    "3-D hx, unbatched": ({}, lambda m: m(_randn(T, IN), (_randn(1, B, H), _randn(1, B, H)))),
    "unbatched h size": ({}, lambda m: m(_randn(T, IN), (_randn(1, H + 1), _randn(1, H)))),
    "dtype": ({}, lambda m: m(_randn(T, B, IN, dtype=F64))),
}


@pytest.mark.parametrize("case", list(LSTM_ERRORS))
def test_lstm_errors_match_nn(case):
    kwargs, call = LSTM_ERRORS[case]
    ref, hand = _pair(**kwargs)
    assert _error(lambda: call(hand)) == _error(lambda: call(ref))


CELL_ERRORS = {
    "input size": lambda m: m(_randn(B, IN + 1)),
    "3-D input": lambda m: m(_randn(B, IN, 1)),
    "3-D hx": lambda m: m(_randn(B, IN), (_randn(B, H, 1), _randn(B, H))),
    "h batch": lambda m: m(_randn(B, IN), (_randn(2, H), _randn(B, H))),
    "c batch": lambda m: m(_randn(B, IN), (_randn(B, H), _randn(2, H))),
    "h size": lambda m: m(_randn(B, IN), (_randn(B, H + 1), _randn(B, H))),
    "c size": lambda m: m(_randn(B, IN), (_randn(B, H), _randn(B, H + 1))),
    "one state": lambda m: m(_randn(B, IN), (_randn(B, H),)),
    "unbatched input, batched hx": lambda m: m(_randn(IN), (_randn(B, H), _randn(B, H))),
    "unbatched input size": lambda m: m(_randn(IN + 1), (_randn(H), _randn(H))),
}


@pytest.mark.parametrize("case", list(CELL_ERRORS))
def test_cell_errors_match_nn(case):
    ref, hand = _pair(cls=nn.LSTMCell, hand=HandLSTMCell)
    assert _error(lambda: CELL_ERRORS[case](hand)) == _error(lambda: CELL_ERRORS[case](ref))


@pytest.mark.parametrize(
    "kwargs",
    [
        {"dropout": 1.5},
        {"dropout": True},
        {"proj_size": H},
        {"proj_size": -1},
        {"input_size": 0},
        {"hidden_size": 0},
        {"hidden_size": "7"},
        {"input_size": 2.0},
        {"bias": "yes"},
        {"batch_first": 1},
        {"num_layers": 0},
    ],
)
def test_constructor_errors_match_nn(kwargs):
    args = {"input_size": IN, "hidden_size": H, **kwargs}
    assert _error(lambda: HandLSTM(**args)) == _error(lambda: nn.LSTM(**args))


def test_dropout_warning_matches_nn():
    messages = []
    for cls in (nn.LSTM, HandLSTM):
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            cls(IN, H, dropout=0.5)
        messages.append([(w.category, str(w.message)) for w in caught])
    assert messages[0] == messages[1] and len(messages[0]) == 1


def test_bench_script_prints_ratio_line(capsys):
    path = Path(__file__).resolve().parents[2] / "scripts" / "bench_rnn.py"
    spec = importlib.util.spec_from_file_location("bench_rnn", path)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    sizes = ["--batch", "2", "--steps", "3", "--input", "3", "--hidden", "4"]
    bench.main(
        [*sizes, "--warmup", "0", "--repeats", "1", "--profile", "3", "--threads", "1", "--floor"]
    )
    out = capsys.readouterr().out
    last = out.strip().splitlines()[-1]
    assert last.startswith("ratio fwd+bwd hand/nn (B=2,T=3,I=3,H=4,L=1): ")
    float(last.rsplit(":", 1)[1])
    assert "hand inference, L=1: " in out and "of which GEMMs" in out  # the --profile tables
    assert "GEMMs alone" in out  # --floor
