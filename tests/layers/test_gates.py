"""The step-by-step replay (seqmodels.layers.gates) against the layers it replays."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from seqmodels.layers import HandLSTM
from seqmodels.layers.gates import reverse_within, unroll
from seqmodels.layers.hand_lstm.function import lstm_forward

IN, H, T, B = 5, 7, 9, 4
LENGTHS = torch.tensor([9, 3, 6, 1])  # unsorted, unequal
F64 = torch.float64
pytestmark = pytest.mark.usefixtures("one_thread_per_module")


def _layer(cls: type, **kwargs) -> nn.Module:
    torch.manual_seed(0)
    return cls(IN, H, batch_first=True, dtype=F64, **kwargs).eval()


def _reference(rnn: nn.Module, x: torch.Tensor, lengths: torch.Tensor | None) -> torch.Tensor:
    """What the layer itself computes (fused kernel; packed when there are lengths)."""
    if lengths is None:
        return rnn(x)[0]
    packed = pack_padded_sequence(x, lengths, batch_first=True, enforce_sorted=False)
    return pad_packed_sequence(rnn(packed)[0], batch_first=True, total_length=x.size(1))[0]


CASES = [
    (nn.LSTM, {}),
    (nn.LSTM, {"num_layers": 2, "bidirectional": True}),
    (nn.GRU, {}),
    (nn.GRU, {"num_layers": 2, "bidirectional": True}),
    (nn.RNN, {"nonlinearity": "tanh", "num_layers": 2}),
    (nn.RNN, {"nonlinearity": "relu", "bidirectional": True}),
    (HandLSTM, {"num_layers": 2, "bidirectional": True}),
]


@pytest.mark.parametrize("with_lengths", [False, True])
@pytest.mark.parametrize(("cls", "kwargs"), CASES)
def test_replay_reproduces_the_layers_outputs(cls, kwargs, with_lengths):
    """States computed from the recomputed gates are the layer's own outputs (float64)."""
    rnn = _layer(cls, **kwargs)
    x = torch.randn(B, T, IN, dtype=F64)
    lengths = LENGTHS if with_lengths else None
    expected = _reference(rnn, x, lengths)
    replayed = unroll(rnn, x, lengths).output
    mask = (torch.arange(T) < (lengths if with_lengths else torch.full((B,), T))[:, None])[
        ..., None
    ]
    torch.testing.assert_close(replayed * mask, expected, atol=1e-12, rtol=0)


def test_replay_float32_matches_fused_lstm_and_gru():
    for cls in (nn.LSTM, nn.GRU):
        torch.manual_seed(0)
        rnn = cls(IN, H, batch_first=True).eval()
        x = torch.randn(B, T, IN)
        torch.testing.assert_close(unroll(rnn, x).output, rnn(x)[0], atol=1e-6, rtol=1e-5)


def test_recomputed_gates_equal_hand_lstm_gates():
    """The gates HandLSTM's forward keeps for its backward are the recomputed ones."""
    rnn = _layer(HandLSTM, bidirectional=True)
    x = torch.randn(B, T, IN, dtype=F64)
    replay = unroll(rnn, x)
    rows = x.transpose(0, 1).reshape(T * B, IN)  # time-major, as HandLSTM runs
    for direction in (0, 1):
        w = [
            getattr(rnn, f"{n}_l0{'_reverse' if direction else ''}")
            for n in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")
        ]
        zeros = torch.zeros(B, H, dtype=F64)
        with torch.no_grad():  # as inside HandLSTM's autograd Function
            *_, saved = lstm_forward(
                rows, zeros, zeros, w[0], w[1], w[2] + w[3], None, [B] * T, direction == 1
            )
        hand_gates = saved[1].view(T, B, 4 * H).transpose(0, 1)  # [B, T, 4H], i f g o
        if direction:  # the replay keeps a reverse direction's gates in its own step order
            hand_gates = hand_gates.flip(1)
        mine = replay.gates[(0, direction)]
        ours = torch.cat([mine[n] for n in ("input", "forget", "cell", "output")], dim=-1)
        torch.testing.assert_close(ours, hand_gates, atol=1e-12, rtol=0)


def test_gates_are_in_range_and_forget_gate_follows_its_bias():
    rnn = _layer(nn.LSTM)
    with torch.no_grad():
        rnn.bias_ih_l0[H : 2 * H] = 20.0  # forget gate bias: always open
    gates = unroll(rnn, torch.randn(B, T, IN, dtype=F64)).gates[(0, 0)]
    assert torch.all(gates["forget"] > 0.999)
    for name in ("input", "output"):
        assert torch.all((gates[name] > 0) & (gates[name] < 1))
    assert torch.all(gates["cell"].abs() < 1)


def test_reverse_within_reverses_each_sequence_inside_its_length():
    x = torch.arange(B * T).view(B, T)
    flipped = reverse_within(x, LENGTHS)
    for b, n in enumerate(LENGTHS.tolist()):
        assert flipped[b, :n].tolist() == x[b, :n].flip(0).tolist()
        assert flipped[b, n:].tolist() == x[b, n:].tolist()
    assert torch.equal(reverse_within(flipped, LENGTHS), x)


def test_replay_refuses_unknown_modules():
    with pytest.raises(TypeError, match="cannot replay Linear"):
        unroll(nn.Linear(3, 3), torch.randn(1, 2, 3))
