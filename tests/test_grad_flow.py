"""Gradient flow through time: the callback's numbers against direct autograd computations."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
from conftest import requires_data, run_script
from tb_events import scalar_tags
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from torch import nn
from torch.nn import functional as F

from seqmodels.callbacks.grad_flow import GradFlowLogger, by_distance, first_rows, gradient_flow
from seqmodels.commands.long_range_report import read_curves
from seqmodels.commands.train import train
from seqmodels.core.errors import ConfigError, UserError
from seqmodels.tasks import CharLM, SlotTagger

B, T = 5, 12
OPTIMIZER = {"_target_": "torch.optim.Adam", "lr": 1e-3}


@pytest.fixture(autouse=True)
def _one_thread(one_thread):
    """Tiny tensors: threads only add overhead."""


def _model(cell: str, **extra) -> dict:
    return {"cell": cell, "embedding_dim": 6, "hidden_size": 7, "dropout": 0.3, **extra}


def _char_lm(cell: str, **extra) -> CharLM:
    torch.manual_seed(0)
    return CharLM(vocab=list("abcdefghij"), model=_model(cell, **extra), optimizer=OPTIMIZER)


def _direct_inputs_curve(module: CharLM, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """mean_b ||dL_b/dx_{T-1-k}|| with the layer's own (fused) forward and autograd."""
    module.eval()  # no dropout between layers: the measurement has none
    emb = module.embedding(x).detach().requires_grad_(True)
    out, _ = module.encoder.rnn(emb)
    loss = F.cross_entropy(module.head(out[:, -1]), y[:, -1], reduction="sum")
    (grad,) = torch.autograd.grad(loss, emb)
    return grad.norm(dim=-1).mean(0).flip(0)


@pytest.mark.parametrize(
    ("cell", "extra"),
    [
        ("rnn", {}),
        ("lstm", {}),
        ("gru", {"num_layers": 2}),
        ("hand_lstm", {}),
        ("lstm", {"num_layers": 2}),
    ],
)
def test_callback_equals_direct_autograd_on_the_fused_layer(cell, extra):
    module = _char_lm(cell, **extra).double()
    x, y = torch.randint(1, 10, (B, T)), torch.randint(1, 10, (B, T))
    curve = GradFlowLogger(max_batch=B).measure(module, (x, y))
    torch.testing.assert_close(curve.inputs, _direct_inputs_curve(module, x, y), rtol=1e-9, atol=0)
    assert (curve.cell is not None) == (cell in ("lstm", "hand_lstm"))


@pytest.mark.parametrize("cell", ["lstm", "gru", "rnn"])
def test_state_gradients_equal_a_split_run_of_the_fused_layer(cell):
    """dL/dh_{T-1-k} (and the total dL/dc): run the fused layer to step T-1-k, make its
    state a leaf, run the rest from that state, differentiate."""
    module = _char_lm(cell).double()
    x, y = torch.randint(1, 10, (B, T)), torch.randint(1, 10, (B, T))
    curve = GradFlowLogger(max_batch=B).measure(module, (x, y))
    emb = module.embedding(x).detach()
    rnn = module.encoder.rnn
    for k in (1, 3, T - 1):
        t = T - 1 - k
        _, state = rnn(emb[:, : t + 1])
        leaves = [s.detach().requires_grad_(True) for s in (state if cell == "lstm" else (state,))]
        out, _ = rnn(emb[:, t + 1 :], tuple(leaves) if cell == "lstm" else leaves[0])
        loss = F.cross_entropy(module.head(out[:, -1]), y[:, -1], reduction="sum")
        grads = torch.autograd.grad(loss, leaves)
        expected_h = grads[0][0].norm(dim=-1).mean()
        torch.testing.assert_close(curve.hidden[k], expected_h, rtol=1e-9, atol=0)
        if cell == "lstm":
            # The split run's dL/dc_t holds h_t fixed; the total adds the path through
            # h_t = o_t tanh(c_t), with o_t = h_t / tanh(c_t) from the layer's own state.
            h, c = (s[0] for s in state)
            d_h, d_c = (g[0] for g in grads)
            total = d_c + d_h * (h / c.tanh()) * (1 - c.tanh() ** 2)
            torch.testing.assert_close(curve.cell[k], total.norm(dim=-1).mean(), rtol=1e-9, atol=0)


def _tagger_and_batch(**extra) -> tuple[SlotTagger, dict]:
    """A float64 bidirectional LSTM tagger (eval mode) and a padded batch of B utterances."""
    torch.manual_seed(0)
    vocabs = {
        "words": ["<pad>", "<unk>", *"abcdefg"],
        "tags": ["<pad>", "O", "B-x", "I-x"],
        "intents": ["<unk>", "a", "b"],
    }
    model = _model("lstm", bidirectional=True, **extra)
    module = SlotTagger(vocabs=vocabs, model=model, optimizer=OPTIMIZER).double().eval()
    lengths = torch.tensor([12, 4, 9, 1, 7])
    steps = torch.arange(T)
    words = torch.randint(2, 9, (B, T)) * (steps < lengths[:, None])
    tags = torch.randint(1, 4, (B, T)) * (steps < lengths[:, None])
    return module, {
        "words": words,
        "lengths": lengths,
        "tags": tags,
        "intents": torch.ones(B).long(),
    }


def test_slot_filling_with_lengths_and_bidirectional_encoder_equals_packed_autograd():
    module, batch = _tagger_and_batch()
    words, lengths, tags = batch["words"], batch["lengths"], batch["tags"]
    curve = GradFlowLogger(max_batch=B).measure(module, batch)

    emb = module.embedding(words).detach().requires_grad_(True)
    states = module.encoder(emb, lengths)  # packed: the reverse direction starts at each end
    rows, last = torch.arange(B), lengths - 1
    loss = F.cross_entropy(module.tag_head(states[rows, last]), tags[rows, last], reduction="sum")
    (grad,) = torch.autograd.grad(loss, emb)
    expected = by_distance(grad.norm(dim=-1), last)
    torch.testing.assert_close(curve.inputs, expected, rtol=1e-9, atol=0)
    assert len(curve.inputs) == 12  # distances 0..11; the mean at k only over long-enough ones


def test_slot_filling_flow_goes_through_self_attention():
    """With model.self_attention, the tag at the last step reads every state through the
    attention layer: the measured curve is that network's, written out here step by step."""
    module, batch = _tagger_and_batch(self_attention=1)
    words, lengths, tags = batch["words"], batch["lengths"], batch["tags"]
    curve = GradFlowLogger(max_batch=B).measure(module, batch)

    emb = module.embedding(words).detach().requires_grad_(True)
    states = module.attend(module.encoder(emb, lengths), words != 0)
    rows, last = torch.arange(B), lengths - 1
    loss = F.cross_entropy(module.tag_head(states[rows, last]), tags[rows, last], reduction="sum")
    (grad,) = torch.autograd.grad(loss, emb)
    torch.testing.assert_close(
        curve.inputs, by_distance(grad.norm(dim=-1), last), rtol=1e-9, atol=0
    )

    plain = module.encoder(emb, lengths)  # the curve without the attention layer differs
    loss = F.cross_entropy(module.tag_head(plain[rows, last]), tags[rows, last], reduction="sum")
    (grad,) = torch.autograd.grad(loss, emb)
    assert not torch.allclose(curve.inputs, by_distance(grad.norm(dim=-1), last))


@pytest.mark.parametrize("a", [0.5, 0.9, 1.3])
def test_linear_rnn_gradient_scales_as_a_to_the_k(a):
    """h_t = a h_{t-1} + x_t (a relu RNN kept in its linear part): dL/dx_{T-k} = a^k dL/dh_T."""
    size = 3
    rnn = nn.RNN(size, size, nonlinearity="relu", batch_first=True).double()
    with torch.no_grad():
        rnn.weight_ih_l0.copy_(torch.eye(size))
        rnn.weight_hh_l0.copy_(a * torch.eye(size, dtype=torch.float64))
        rnn.bias_ih_l0.zero_()
        rnn.bias_hh_l0.zero_()
    x = torch.rand(B, T, size, dtype=torch.float64) + 0.1  # positive: relu is the identity
    curve = gradient_flow(rnn, x, None, lambda states: states[:, -1].sum(-1))
    expected = math.sqrt(size) * a ** torch.arange(T, dtype=torch.float64)
    torch.testing.assert_close(curve.inputs, expected, rtol=1e-12, atol=0)
    torch.testing.assert_close(curve.hidden, expected, rtol=1e-12, atol=0)


def test_parameters_gradients_and_rng_are_untouched():
    module = _char_lm("lstm")
    x, y = torch.randint(1, 10, (B, T)), torch.randint(1, 10, (B, T))
    rng = torch.get_rng_state()
    GradFlowLogger().measure(module, (x, y))
    assert torch.equal(torch.get_rng_state(), rng)
    assert all(p.grad is None for p in module.parameters())


def test_bad_options_name_the_option():
    with pytest.raises(ConfigError, match="callbacks.grad_flow.every_n_steps"):
        GradFlowLogger(every_n_steps=0)
    with pytest.raises(ConfigError, match="callbacks.grad_flow.max_batch"):
        GradFlowLogger(max_batch=0)


@requires_data
def test_callback_does_not_change_the_training_run(cfg_factory, tmp_path: Path):
    """Firing every step (dropout on) leaves every number of the run as it was without it."""
    common = ("model=lstm", "seed=0", "callbacks.model_checkpoint=null", "logger=none")
    with_flow = train(cfg_factory(*common, "callbacks.grad_flow.every_n_steps=1"))
    without = train(
        cfg_factory(*common, "callbacks.grad_flow=null", f"paths.output_dir={tmp_path / 'b'}")
    )
    assert with_flow == without


@requires_data
@pytest.mark.parametrize("model", ["rnn", "lstm", "gru", "hand_lstm", "bilstm", "hand_bilstm"])
def test_every_model_logs_grad_flow_scalars_and_curve(cfg_factory, tmp_path: Path, model):
    task = ["task=char_lm", "data.block_size=20"] if "bi" not in model else []
    train(cfg_factory(*task, f"model={model}", "callbacks.grad_flow.every_n_steps=2"))
    tags = scalar_tags(tmp_path / "tensorboard")
    assert len(tags["grad_flow/k=1"]) == 2  # steps 0 and 2 of 4
    assert all(v > 0 for v in tags["grad_flow/hidden/k=1"])
    if "task=char_lm" in task:
        assert "grad_flow/k=16" in tags and "grad_flow/k=64" not in tags  # 20 steps only
    assert ("grad_flow/cell/k=1" in tags) == ("lstm" in model)
    images = []
    for event_file in (tmp_path / "tensorboard").glob("events.out.tfevents.*"):
        acc = EventAccumulator(str(event_file), size_guidance={"images": 0})
        acc.Reload()
        images += acc.Tags()["images"]
    assert "grad_flow/curve" in images
    records = [json.loads(line) for line in (tmp_path / "grad_flow.jsonl").open()]
    assert [r["step"] for r in records] == [0, 2]
    assert records[0]["model"] == model.replace("bilstm", "lstm")
    assert ("cell" in records[0]) == ("lstm" in model)


def test_measures_only_the_first_max_batch_sequences_of_any_batch_form():
    module = _char_lm("gru")
    x, y = torch.randint(1, 10, (B, T)), torch.randint(1, 10, (B, T))
    cut = GradFlowLogger(max_batch=2).measure(module, [x, y])  # default_collate gives a list
    torch.testing.assert_close(cut.inputs, GradFlowLogger().measure(module, (x[:2], y[:2])).inputs)
    batch = {"words": x, "tokens": [["w"] * T] * B, "lengths": torch.full((B,), T)}
    assert first_rows(batch, 2)["tokens"] == [["w"] * T] * 2
    assert first_rows(batch, 2)["words"].shape == (2, T)


def test_plot_script_draws_saved_curves_and_names_a_missing_file(tmp_path: Path):
    for name, decay in (("rnn", 0.5), ("lstm", 0.95)):
        run = tmp_path / name
        run.mkdir()
        lines = [
            {"step": step, "model": name, "inputs": [decay**k for k in range(30)]}
            for step in (0, 200)
        ]
        (run / "grad_flow.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines))
    png = tmp_path / "flow.png"
    done = run_script(
        "plot_grad_flow.py",
        str(png),
        f"rnn={tmp_path / 'rnn'}",
        f"lstm={tmp_path / 'lstm'}",
        cwd=tmp_path,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().splitlines()[-1] == str(png)
    assert png.read_bytes()[:4] == b"\x89PNG"
    with pytest.raises(UserError, match="grad_flow.jsonl not found"):
        read_curves(tmp_path)
