"""Long-range problems: generators, the DataModule's determinism, and training through train()."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from tb_events import scalar_tags

from seqmodels.commands.long_range_report import collect_sweep, plot_sweep
from seqmodels.commands.train import train
from seqmodels.core.errors import ConfigError
from seqmodels.data import LongRangeDataModule
from seqmodels.data.generators import adding_batch, copy_batch


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def test_adding_targets_are_the_sum_of_the_two_marked_values():
    x, y = adding_batch(_gen(0), 500, 30)
    assert x.shape == (500, 30, 2) and y.shape == (500,)
    markers = x[..., 1]
    assert torch.all(markers.sum(1) == 2)
    assert torch.all(markers[:, :15].sum(1) == 1) and torch.all(markers[:, 15:].sum(1) == 1)
    torch.testing.assert_close(y, (x[..., 0] * markers).sum(1))
    assert 0.0 <= x[..., 0].min() and x[..., 0].max() < 1.0
    # Predicting the mean: MSE ~ Var(U1 + U2) = 1/6.
    _, many = adding_batch(_gen(1), 20000, 10)
    assert ((many - 1.0) ** 2).mean().item() == pytest.approx(1 / 6, abs=0.01)


def test_copy_inputs_and_targets():
    x, y = copy_batch(_gen(0), 100, 20, num_symbols=8, copy_length=4)
    assert x.shape == (100, 20) and y.shape == (100, 4)
    assert torch.equal(x[:, :4], y)
    assert torch.all((1 <= y) & (y <= 8))
    assert torch.all(x[:, 4:16] == 0) and torch.all(x[:, 16] == 9) and torch.all(x[:, 17:] == 0)


def test_generators_are_deterministic_per_seed():
    for draw in (lambda g: adding_batch(g, 8, 12), lambda g: copy_batch(g, 8, 12, 5, 3)):
        first, again, other = draw(_gen(7)), draw(_gen(7)), draw(_gen(8))
        assert all(torch.equal(a, b) for a, b in zip(first, again))
        assert not torch.equal(first[0], other[0])


@pytest.mark.parametrize("name", ["adding", "copy"])
def test_datamodule_fresh_train_batches_fixed_eval_and_no_global_rng(name):
    def batches(seed: int, epoch: int) -> list[torch.Tensor]:
        dm = LongRangeDataModule(name=name, length=12, steps_per_epoch=3, seed=seed)
        loader = dm.train_dataloader()
        loader.sampler.set_epoch(epoch)
        return [x for x, _ in loader]

    rng = torch.get_rng_state()
    epoch0, epoch1 = batches(0, 0), batches(0, 1)
    assert torch.equal(torch.get_rng_state(), rng)
    assert all(torch.equal(a, b) for a, b in zip(epoch0, batches(0, 0)))  # same seed: same data
    seen = [*epoch0, *epoch1]
    assert all(not torch.equal(a, b) for i, a in enumerate(seen) for b in seen[i + 1 :])
    assert not torch.equal(epoch0[0], batches(1, 0)[0])
    dm = LongRangeDataModule(name=name, length=12, seed=0, eval_batches=2)
    val, test = [x for x, _ in dm.val_dataloader()], [x for x, _ in dm.test_dataloader()]
    assert all(torch.equal(a, b) for a, b in zip(val, [x for x, _ in dm.val_dataloader()]))
    assert not torch.equal(val[0], test[0])


def test_bad_sizes_name_the_option():
    with pytest.raises(ConfigError, match="data.length"):
        LongRangeDataModule(name="copy", length=6, copy_length=3)
    with pytest.raises(ConfigError, match="data.name"):
        LongRangeDataModule(name="reverse")
    with pytest.raises(ConfigError, match="data.steps_per_epoch"):
        LongRangeDataModule(steps_per_epoch=0)


LONG_RANGE = ["task=long_range", "data.length=16", "data.eval_batches=2"]


@pytest.mark.parametrize("model", ["rnn", "lstm", "gru", "hand_lstm", "bilstm"])
def test_adding_trains_through_train(cfg_factory, tmp_path: Path, model, one_thread):
    metrics = train(cfg_factory(*LONG_RANGE, f"model={model}"))
    assert metrics["test/mse"] == pytest.approx(metrics["test/loss"])
    assert metrics["test/chance_mse"] == pytest.approx(1 / 6, abs=0.03)
    assert math.isfinite(metrics["val/loss"])
    tags = scalar_tags(tmp_path / "tensorboard")
    assert {"grad_flow/k=1", "grad_flow/k=4", "val/mse", "val/chance_mse"} <= set(tags)


def test_copy_trains_through_train(cfg_factory, one_thread):
    metrics = train(cfg_factory(*LONG_RANGE, "data=copy", "model=lstm"))
    assert metrics["test/chance_acc"] == pytest.approx(100 / 8)
    assert 0.0 <= metrics["test/acc"] <= 100.0


@pytest.mark.parametrize("model", ["lstm", "rnn"])
def test_copy_experiment_starts_lstm_forget_gates_at_one(
    cfg_factory, tmp_path: Path, model, one_thread
):
    """experiment=long_range_copy: data=copy, lr 1e-2, forget bias 1 (LSTM); rnn ignores it."""
    cfg = cfg_factory("experiment=long_range_copy", f"model={model}", *LONG_RANGE[1:])
    assert (cfg.data.name, cfg.task.module.optimizer.lr, cfg.model.forget_bias) == (
        "copy",
        0.01,
        1.0,
    )
    if model == "rnn":
        with pytest.warns(UserWarning, match="has no forget gate"):
            metrics = train(cfg)
    else:
        metrics = train(cfg)
        checkpoint = next((tmp_path / "checkpoints").glob("*.ckpt"))
        state = torch.load(checkpoint, weights_only=True)["state_dict"]
        hidden = cfg.model.hidden_size
        forget = slice(hidden, 2 * hidden)  # gate rows i, f, g, o
        total = state["encoder.rnn.bias_ih_l0"][forget] + state["encoder.rnn.bias_hh_l0"][forget]
        assert (total - 1.0).abs().max() < 0.2  # started at 1, a few Adam steps of 1e-2 since
    assert metrics["test/chance_acc"] == pytest.approx(100 / 8)


def test_lstm_learns_a_short_adding_problem(cfg_factory, one_thread):
    """A few hundred steps at length 10: the LSTM's MSE falls well under chance (1/6)."""
    metrics = train(
        cfg_factory(
            "task=long_range",
            "model=lstm",
            "data.length=10",
            "data.steps_per_epoch=150",
            "trainer.max_epochs=3",
            "task.module.optimizer.lr=0.01",
            "++trainer.limit_train_batches=null",
            tiny=False,
        )
    )
    assert metrics["test/mse"] < 0.05


def test_sweep_plot_reads_finished_jobs(cfg_factory, tmp_path: Path, one_thread):
    for n, (model, length) in enumerate([("rnn", 8), ("rnn", 12), ("lstm", 8)]):
        train(
            cfg_factory(
                *LONG_RANGE,
                f"model={model}",
                f"data.length={length}",
                f"paths.output_dir={tmp_path / 'sweep' / str(n)}",
            )
        )
        # Hydra writes each job's config; a test run gets it from the composed config.
    for n, (model, length) in enumerate([("rnn", 8), ("rnn", 12), ("lstm", 8)]):
        hydra_dir = tmp_path / "sweep" / str(n) / ".hydra"
        hydra_dir.mkdir()
        (hydra_dir / "config.yaml").write_text(
            f"model: {{name: {model}}}\ndata: {{length: {length}}}\n"
        )
    rows = collect_sweep(tmp_path / "sweep")
    assert sorted((r["model"], r["length"]) for r in rows) == [("lstm", 8), ("rnn", 8), ("rnn", 12)]
    png = tmp_path / "plot.png"
    plot_sweep(rows, "test/mse", png, chance=1 / 6)
    assert png.read_bytes()[:4] == b"\x89PNG"
