"""The checks nn.LSTM makes (packed states, dtypes) and the attributes its users read."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.nn.utils import parametrizations
from torch.nn.utils.rnn import pack_padded_sequence

from seqmodels.layers import HandLSTM, HandLSTMCell

IN, H, T = 3, 4, 5
F64 = torch.float64
pytestmark = [
    pytest.mark.filterwarnings("ignore:LSTM with projections is not supported"),
    pytest.mark.usefixtures("one_thread_per_module"),
]


def _pair(cls=nn.LSTM, hand_cls=HandLSTM, **kwargs):
    torch.manual_seed(0)
    ref = cls(IN, H, **kwargs)
    hand = hand_cls(IN, H, **kwargs)
    hand.load_state_dict(ref.state_dict())
    return ref, hand


def _error(fn):
    with pytest.raises(Exception) as info:  # noqa: B017 - compared to nn's below
        fn()
    return type(info.value), str(info.value)


def _packed(lengths, dtype=torch.float32, sorted_=True):
    x = torch.randn(T, len(lengths), IN, dtype=dtype)
    return pack_padded_sequence(x, torch.tensor(lengths), enforce_sorted=sorted_)


def _state(rows, dtype=torch.float32):
    return torch.randn(1, rows, H, dtype=dtype), torch.randn(1, rows, H, dtype=dtype)


@pytest.mark.parametrize("rows", [1, 3])
def test_packed_state_with_wrong_batch_raises_like_nn_lstm(rows):
    """2 sequences, h0/c0 with 1 or 3 rows: nn.LSTM fails inside ATen; HandLSTM names it."""
    ref, hand = _pair()
    packed = _packed([5, 3])
    ref_type, _ = _error(lambda: ref(packed, _state(rows)))
    hand_type, message = _error(lambda: hand(packed, _state(rows)))
    assert hand_type is ref_type is RuntimeError
    assert message == f"Expected hidden[0] size (1, 2, {H}), got [1, {rows}, {H}]"


@pytest.mark.parametrize("rows", [2, 4])
def test_unsorted_packed_state_with_wrong_batch_raises(rows):
    """Unsorted, nn.LSTM index_selects the rows first: 4 rows for 3 sequences pass silently
    there (the 4th is dropped). HandLSTM checks before permuting, so both raise."""
    hand = _pair()[1]
    packed = _packed([3, 5, 2], sorted_=False)
    with pytest.raises(RuntimeError, match=rf"Expected hidden\[0\] size \(1, 3, {H}\)"):
        hand(packed, _state(rows))
    h0, c0 = _state(3)
    with pytest.raises(RuntimeError, match=rf"Expected hidden\[1\] size \(1, 3, {H}\)"):
        hand(packed, (h0, c0[:, :2]))


DTYPE_CASES = {
    "packed input": lambda m: m(_packed([5, 3], dtype=F64)),
    "packed state": lambda m: m(_packed([5, 3]), _state(2, dtype=F64)),
    "packed unsorted input": lambda m: m(_packed([3, 5], dtype=F64, sorted_=False)),
}


@pytest.mark.parametrize("case", list(DTYPE_CASES))
def test_dtype_mismatch_packed_raises_nn_lstm_message(case):
    ref, hand = _pair()
    expected = _error(lambda: DTYPE_CASES[case](ref))
    assert _error(lambda: DTYPE_CASES[case](hand)) == expected
    assert "must have the same dtype, but got Double and Float" in expected[1]


def test_dtype_mismatch_of_state_raises_a_runtime_error_as_nn_lstm():
    """Unpacked, nn.LSTM's message for a float64 state is oneDNN's; both are RuntimeErrors."""
    ref, hand = _pair()
    x, hx = torch.randn(T, 2, IN), _state(2, dtype=F64)
    assert _error(lambda: ref(x, hx))[0] is RuntimeError
    assert _error(lambda: hand(x, hx)) == (
        RuntimeError,
        "mat1 and mat2 must have the same dtype, but got Double and Float",
    )


CELL_DTYPE_CASES = {
    "input": lambda m: m(torch.randn(2, IN, dtype=F64)),
    "h": lambda m: m(torch.randn(2, IN), (torch.randn(2, H, dtype=F64), torch.randn(2, H))),
    "float64 cell": lambda m: m.double()(torch.randn(2, IN)),
}


@pytest.mark.parametrize("case", list(CELL_DTYPE_CASES))
def test_cell_dtype_mismatch_raises_nn_lstm_cell_message(case):
    ref, hand = _pair(nn.LSTMCell, HandLSTMCell)
    expected = _error(lambda: CELL_DTYPE_CASES[case](ref))
    assert _error(lambda: CELL_DTYPE_CASES[case](hand)) == expected


def test_autocast_allows_mixed_dtypes():
    _, hand = _pair()
    _, cell = _pair(nn.LSTMCell, HandLSTMCell)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out, _ = hand(_packed([5, 3]), _state(2, dtype=torch.bfloat16))
        h, _ = cell(torch.randn(2, IN), (torch.randn(2, H, dtype=torch.bfloat16),) * 2)
    assert out.data.dtype == h.dtype == torch.bfloat16


def test_mode_and_flat_weights_as_nn_lstm():
    ref, hand = _pair(num_layers=2, bidirectional=True, proj_size=2)
    assert hand.mode == ref.mode == "LSTM"
    assert hand._flat_weights_names == ref._flat_weights_names
    assert hand._all_weights == ref._all_weights
    for name, weight in zip(hand._flat_weights_names, hand._flat_weights, strict=True):
        assert weight is getattr(hand, name)


def test_flat_weights_follow_replaced_parameters():
    ref, hand = _pair(num_layers=2)
    for model in (ref, hand):
        new = nn.Parameter(torch.zeros(4 * H, H))
        model.weight_hh_l1 = new
        assert model._flat_weights[model._flat_weights_names.index("weight_hh_l1")] is new
    x = torch.randn(T, 2, IN)
    torch.testing.assert_close(hand(x)[0], ref(x)[0], atol=1e-5, rtol=0)
    for model in (ref, hand):
        model.double()
        assert all(w.dtype == F64 for w in model._flat_weights)
        assert all(
            w is getattr(model, n) for n, w in zip(model._flat_weights_names, model._flat_weights)
        )


def _outputs_and_weight_grads(model, x):
    out, (h, c) = model(x)
    loss = out.pow(2).sum() + h.sum() + c.sum()
    params = [p for _, p in sorted(model.named_parameters())]
    return [out, *torch.autograd.grad(loss, params)]


def test_weight_norm_parametrization_as_nn_lstm():
    ref, hand = _pair(num_layers=2, bidirectional=True)
    for model in (ref, hand):
        for name in ("weight_hh_l0", "weight_ih_l1_reverse"):
            parametrizations.weight_norm(model, name)
    x = torch.randn(T, 2, IN)
    expected, actual = _outputs_and_weight_grads(ref, x), _outputs_and_weight_grads(hand, x)
    for e, a in zip(expected, actual, strict=True):
        torch.testing.assert_close(a, e, atol=1e-5, rtol=0)


@pytest.mark.filterwarnings("ignore:.*torch.nn.utils.weight_norm is deprecated")
def test_old_weight_norm_hook_as_nn_lstm():
    ref, hand = _pair()
    for model in (ref, hand):
        nn.utils.weight_norm(model, "weight_hh_l0")
    x = torch.randn(T, 2, IN)
    expected, actual = _outputs_and_weight_grads(ref, x), _outputs_and_weight_grads(hand, x)
    for e, a in zip(expected, actual, strict=True):
        torch.testing.assert_close(a, e, atol=1e-5, rtol=0)


class WeightDrop(nn.Module):
    """AWD-LSTM's weight drop: the raw W_hh is the parameter, a dropped copy the RNN's weight."""

    def __init__(self, rnn: nn.Module, p: float = 0.5) -> None:
        super().__init__()
        self.rnn, self.p = rnn, p
        raw = rnn.weight_hh_l0
        del rnn._parameters["weight_hh_l0"]
        self.weight_hh_raw = nn.Parameter(raw.detach().clone())
        rnn.weight_hh_l0 = self.weight_hh_raw.clone()

    def forward(self, x: torch.Tensor):
        self.rnn.weight_hh_l0 = nn.functional.dropout(self.weight_hh_raw, self.p, self.training)
        return self.rnn(x)


def test_weight_drop_as_nn_lstm():
    ref, hand = _pair()
    x = torch.randn(T, 2, IN)
    results = []
    for model in (WeightDrop(ref), WeightDrop(hand)):
        torch.manual_seed(5)
        out, _ = model(x)
        rnn = model.rnn
        assert rnn._flat_weights[rnn._flat_weights_names.index("weight_hh_l0")] is rnn.weight_hh_l0
        results.append([out, *torch.autograd.grad(out.pow(2).sum(), model.weight_hh_raw)])
    for e, a in zip(*results, strict=True):
        torch.testing.assert_close(a, e, atol=1e-5, rtol=0)


def test_cell_with_float64_c_type_promotes_as_nn_lstm_cell():
    """ATen's lstm_cell multiplies c without a dtype check: a float64 c gives float64 h', c'."""
    ref, hand = _pair(nn.LSTMCell, HandLSTMCell)
    x, hx = torch.randn(2, IN), (torch.randn(2, H), torch.randn(2, H, dtype=F64))
    expected, actual = ref(x, hx), hand(x, hx)
    for e, a in zip(expected, actual, strict=True):
        assert a.dtype == e.dtype == F64
        torch.testing.assert_close(a, e, atol=1e-6, rtol=0)


@pytest.mark.filterwarnings("ignore:.*torch.nn.utils.weight_norm is deprecated")
@pytest.mark.parametrize("name,proj_size", [("weight_ih_l0", 0), ("weight_hr_l0", 2)])
def test_weight_norm_and_its_removal_in_flat_weights(name, proj_size):
    """PyTorch's test_rnn_weight_norm: the normed weight leaves _flat_weights' Parameters."""
    counts = []
    for cls in (nn.LSTM, HandLSTM):
        model = nn.utils.weight_norm(cls(IN, H, proj_size=proj_size), name=name)
        normed = sum(isinstance(p, nn.Parameter) for p in model._flat_weights)
        model(torch.randn(T, 2, IN))
        model = nn.utils.remove_weight_norm(model, name=name)
        restored = sum(isinstance(p, nn.Parameter) for p in model._flat_weights)
        assert name in model._parameters and name + "_g" not in dict(model.named_parameters())
        counts.append((normed, restored))
    assert counts[0] == counts[1] == [(3, 4), (4, 5)][proj_size > 0]


def test_cell_of_hidden_size_zero_as_nn_lstm_cell():
    ref, hand = (cls(IN, 0) for cls in (nn.LSTMCell, HandLSTMCell))
    x = torch.randn(2, IN, requires_grad=True)
    for model in (ref, hand):
        h, c = model(x)
        assert h.shape == c.shape == (2, 0)
        (h.sum() + c.sum()).backward()
