"""Gate statistics: the numbers for known gates, and the tags a run logs for each model."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from conftest import requires_data
from tb_events import scalar_tags
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from seqmodels.callbacks.gate_stats import gate_statistics
from seqmodels.commands.train import train


def test_statistics_of_known_gates_over_valid_steps_only():
    gates = {
        "forget": torch.tensor([[0.01, 0.5, 0.99], [0.2, 0.97, 0.7]]).unsqueeze(-1),
        "cell": torch.tensor([[-0.5, 0.5, 1.0], [0.1, -0.3, 9.0]]).unsqueeze(-1),
    }
    mask = torch.tensor([[True, True, True], [True, True, False]])
    stats = gate_statistics(gates, mask)
    assert stats["forget_mean"].item() == pytest.approx((0.01 + 0.5 + 0.99 + 0.2 + 0.97) / 5)
    assert stats["forget_saturated"].item() == pytest.approx(3 / 5)
    assert stats["cell_abs_mean"].item() == pytest.approx((0.5 + 0.5 + 1.0 + 0.1 + 0.3) / 5)
    assert set(stats) == {"forget_mean", "forget_saturated", "cell_abs_mean"}


def _histogram_tags(log_dir: Path) -> set[str]:
    tags: set[str] = set()
    for event_file in log_dir.glob("events.out.tfevents.*"):
        acc = EventAccumulator(str(event_file), size_guidance={"histograms": 0})
        acc.Reload()
        tags |= set(acc.Tags()["histograms"])
    return tags


@requires_data
@pytest.mark.parametrize(
    ("model", "layers", "gates"),
    [
        ("lstm", ["l0"], ["input", "forget", "output"]),
        ("bilstm", ["l0", "l0_reverse"], ["input", "forget", "output"]),
        ("hand_lstm", ["l0", "l1"], ["input", "forget", "output"]),
        ("gru", ["l0"], ["update", "reset"]),
        ("rnn", [], []),
    ],
)
def test_each_model_logs_its_gates_once_per_validation(
    cfg_factory, tmp_path: Path, model, layers, gates
):
    overrides = ["model.num_layers=2"] if model == "hand_lstm" else []
    train(cfg_factory(f"model={model}", "trainer.max_epochs=2", *overrides))
    tags = scalar_tags(tmp_path / "tensorboard")
    logged = {t for t in tags if t.startswith("gates/")}
    expected = {
        f"gates/{layer}/{g}_{s}" for layer in layers for g in gates for s in ("mean", "saturated")
    }
    assert expected <= logged, sorted(logged)
    if not layers:
        assert not logged
        return
    for tag in expected:
        assert len(tags[tag]) == 2  # once per validation (not in the sanity check)
        assert all(0.0 <= v <= 1.0 for v in tags[tag])
    if model != "gru":
        assert all(0.0 <= v <= 1.0 for v in tags[f"gates/{layers[0]}/cell_abs_mean"])
    assert {f"gates/{layers[0]}/{g}" for g in gates} <= _histogram_tags(tmp_path / "tensorboard")
