"""torch.export, torch.jit.trace and torch.compile of modules holding HandLSTM vs nn.LSTM."""

from __future__ import annotations

import shutil

import pytest
import torch
from torch import nn

from seqmodels.layers import HandLSTM, HandLSTMCell

IN, H, T, B = 3, 4, 5, 2
KWARGS = dict(num_layers=2, bidirectional=True, batch_first=True)
pytestmark = [
    pytest.mark.usefixtures("one_thread_per_module"),
    pytest.mark.filterwarnings("ignore:The tensor attributes self.rnn._flat_weights"),
    pytest.mark.filterwarnings("ignore:`torch.jit.trace` is deprecated"),
    pytest.mark.filterwarnings("ignore:`torch.jit.trace_method` is deprecated"),
    pytest.mark.filterwarnings("ignore::torch.jit.TracerWarning"),
    pytest.mark.filterwarnings("ignore:`torch.jit.script_method` is deprecated"),
]


class Tagger(nn.Module):
    """A typical user module: an RNN encoder under a linear head."""

    def __init__(self, rnn: nn.Module) -> None:
        super().__init__()
        self.rnn, self.head = rnn, nn.Linear(2 * H, 3)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        out, (h_n, c_n) = self.rnn(x)
        return self.head(out), h_n + c_n


def _pair() -> tuple[Tagger, Tagger]:
    torch.manual_seed(0)
    ref = Tagger(nn.LSTM(IN, H, **KWARGS))
    hand = Tagger(HandLSTM(IN, H, **KWARGS))
    hand.load_state_dict(ref.state_dict())
    return ref.eval(), hand.eval()


def _close(expected, actual, atol=1e-5):
    for e, a in zip(expected, actual, strict=True):
        torch.testing.assert_close(a, e, atol=atol, rtol=0)


def test_export_runs_and_matches_nn_lstm():
    ref, hand = _pair()
    x = torch.randn(B, T, IN)
    program = torch.export.export(hand, (x,))
    _close(ref(x), program.module()(x))
    node_targets = {str(n.target) for n in program.graph.nodes}
    assert not any("lstm" in t for t in node_targets)  # the hand recurrence, not aten.lstm


def test_export_of_cell_matches_nn_lstm_cell():
    torch.manual_seed(0)
    ref, hand = nn.LSTMCell(IN, H), HandLSTMCell(IN, H)
    hand.load_state_dict(ref.state_dict())
    x, hx = torch.randn(B, IN), (torch.randn(B, H), torch.randn(B, H))
    _close(ref(x, hx), torch.export.export(hand, (x, hx)).module()(x, hx))


@pytest.mark.parametrize("shape", [(B, T, IN), (B + 2, T + 3, IN), (1, 1, IN)])
def test_jit_trace_runs_other_shapes_as_nn_lstm(shape):
    """The trace keeps the recurrence as one scripted node (as nn.LSTM's aten::lstm), so a
    module traced at one shape runs at others, forward and backward."""
    ref, hand = _pair()
    traced = [torch.jit.trace(m, (torch.randn(B, T, IN),)) for m in (ref, hand)]
    x = torch.randn(shape)
    results = []
    for model, trace in zip((ref, hand), traced, strict=True):
        leaf = x.clone().requires_grad_()
        out, state = trace(leaf)
        (out.pow(2).sum() + state.sum()).backward()
        results.append([out, state, leaf.grad])
        torch.testing.assert_close(out, model(x)[0], atol=1e-5, rtol=0)
    _close(*results)


class PackedEncoder(nn.Module):
    """As PyTorch's test_rnn_trace_override: pack, run, pad, with the lengths an input."""

    def __init__(self, rnn: nn.Module) -> None:
        super().__init__()
        self.rnn = rnn

    def forward(self, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        packed = nn.utils.rnn.pack_padded_sequence(x, lengths, enforce_sorted=False)
        return nn.utils.rnn.pad_packed_sequence(self.rnn(packed)[0])[0]


def test_jit_trace_of_packed_input_runs_other_lengths():
    torch.manual_seed(0)
    ref = nn.LSTM(IN, H, num_layers=2, bidirectional=True)
    hand = HandLSTM(IN, H, num_layers=2, bidirectional=True)
    hand.load_state_dict(ref.state_dict())
    x = torch.randn(T, 4, IN)
    traced = torch.jit.trace(PackedEncoder(hand), (x, torch.tensor([5, 3, 2, 1])))
    for lengths in ([5, 3, 2, 1], [2, 5, 5, 4]):
        lengths = torch.tensor(lengths)
        _close([PackedEncoder(ref)(x, lengths)], [traced(x, lengths)])


def test_jit_trace_of_cell_runs_other_batch_sizes():
    torch.manual_seed(0)
    ref, hand = nn.LSTMCell(IN, H), HandLSTMCell(IN, H)
    hand.load_state_dict(ref.state_dict())
    traced = torch.jit.trace(hand, (torch.randn(B, IN), (torch.randn(B, H), torch.randn(B, H))))
    for batch in (B, 5):
        x, hx = torch.randn(batch, IN), (torch.randn(batch, H), torch.randn(batch, H))
        _close(ref(x, hx), traced(x, hx))


@pytest.mark.skipif(
    shutil.which("g++") is None and shutil.which("cc") is None,
    reason="no C++ compiler for inductor",
)
def test_compile_forward_and_backward_match_nn_lstm():
    ref, hand = _pair()
    ref.train(), hand.train()
    x = torch.randn(B, T, IN)
    compiled = torch.compile(hand)
    results = []
    for model in (ref, compiled):
        leaf = x.clone().requires_grad_()
        out, state = model(leaf)
        (out.pow(2).sum() + state.sum()).backward()
        results.append([out, state, leaf.grad, *(p.grad for p in model.parameters())])
    _close(*results)
