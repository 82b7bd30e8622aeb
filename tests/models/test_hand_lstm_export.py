"""torch.export, torch.jit.trace and torch.compile of modules holding HandLSTM vs nn.LSTM."""

from __future__ import annotations

import shutil

import pytest
import torch
from torch import nn

from seqmodels.models import HandLSTM, HandLSTMCell

IN, H, T, B = 3, 4, 5, 2
KWARGS = dict(num_layers=2, bidirectional=True, batch_first=True)
pytestmark = [
    pytest.mark.filterwarnings("ignore:The tensor attributes self.rnn._flat_weights"),
    pytest.mark.filterwarnings("ignore:`torch.jit.trace` is deprecated"),
    pytest.mark.filterwarnings("ignore:`torch.jit.trace_method` is deprecated"),
    pytest.mark.filterwarnings("ignore::torch.jit.TracerWarning"),
]


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


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


def test_jit_trace_matches_nn_lstm_at_the_traced_shape():
    ref, hand = _pair()
    x = torch.randn(B, T, IN)
    traced = torch.jit.trace(hand, (x,))
    _close(ref(x), traced(x))
    y = torch.randn(B, T, IN)
    _close(ref(y), traced(y))


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
