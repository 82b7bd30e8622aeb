"""RNNEncoder's options: the forget-gate bias initialisation and its errors."""

from __future__ import annotations

import pytest
import torch

from seqmodels.layers import RNNEncoder


@pytest.mark.parametrize("bidirectional", [False, True])
@pytest.mark.parametrize("cell", ["lstm", "hand_lstm"])
def test_forget_bias_starts_every_forget_gate_there(cell: str, bidirectional: bool) -> None:
    torch.manual_seed(0)
    encoder = RNNEncoder(cell, 3, 4, num_layers=2, bidirectional=bidirectional, forget_bias=1.0)
    biases = dict(encoder.rnn.named_parameters())
    suffixes = [
        f"_l{k}{d}" for k in range(2) for d in ([""] + (["_reverse"] if bidirectional else []))
    ]
    for suffix in suffixes:
        total = biases[f"bias_ih{suffix}"] + biases[f"bias_hh{suffix}"]
        torch.testing.assert_close(total[4:8], torch.ones(4))  # rows i, f, g, o: f is 4:8
        assert total[:4].abs().max() > 0 and total[8:].abs().max() > 0  # the others untouched
    # The cell keeps σ(1) of its memory on a zero input from a zero state: c_1 = σ(1)·c_0 + i·g.
    x = torch.zeros(1, 1, 3)
    reference = RNNEncoder(cell, 3, 4, forget_bias=1.0)
    with torch.no_grad():
        for name, weight in reference.rnn.named_parameters():
            if name.startswith("bias"):
                weight[:4].fill_(-30.0)  # input gate shut: c_1 = f c_0
    c0 = torch.full((1, 1, 4), 2.0)
    _, (_, c1) = reference.run(x, (torch.zeros(1, 1, 4), c0))
    torch.testing.assert_close(c1, 2.0 * torch.sigmoid(torch.tensor(1.0)).expand(1, 1, 4))


@pytest.mark.parametrize("cell", ["rnn", "gru"])
def test_forget_bias_on_a_cell_without_forget_gate_warns_and_changes_nothing(cell: str) -> None:
    """A sweep over model=rnn,lstm,gru with forget_bias set runs every job; rnn/gru say why."""
    torch.manual_seed(0)
    with pytest.warns(UserWarning, match=r"model\.cell='" + cell + "' has no forget gate"):
        ours = RNNEncoder(cell, 3, 4, forget_bias=1.0).state_dict()
    torch.manual_seed(0)
    plain = RNNEncoder(cell, 3, 4).state_dict()
    for name in plain:
        torch.testing.assert_close(ours[name], plain[name])


def test_no_forget_bias_keeps_pytorchs_init() -> None:
    torch.manual_seed(0)
    ours = RNNEncoder("lstm", 3, 4).rnn.state_dict()
    torch.manual_seed(0)
    plain = torch.nn.LSTM(3, 4, batch_first=True).state_dict()
    for name in plain:
        torch.testing.assert_close(ours[name], plain[name])
