"""Runs cut short, or without validation, train, checkpoint, test and finish cleanly."""

from __future__ import annotations

import logging
import math
import time
from pathlib import Path

import lightning as L
import pytest
import torch
from conftest import requires_data

from seqmodels.commands.train import train
from seqmodels.core.errors import ConfigError

SHORT_RUNS = {
    "max_steps within the first epoch": ["trainer.max_steps=2"],
    "max_time": ["trainer.max_time=00:00:00:01", "trainer.max_epochs=1000"],
    "CPU budget": ["callbacks.cpu_budget.seconds=1", "trainer.max_epochs=1000"],
    "fraction of the training batches": ["trainer.limit_train_batches=0.02"],
    "validation twice an epoch": ["trainer.val_check_interval=0.5", "trainer.max_epochs=2"],
    "no validation": ["trainer.limit_val_batches=0"],
}
TASKS = {"slot_filling": [], "char_lm": ["task=char_lm", "data.block_size=32"]}


@requires_data
@pytest.mark.parametrize("task", TASKS)
@pytest.mark.parametrize("case", SHORT_RUNS)
def test_short_run_finishes_with_checkpoints_and_test_metrics(
    cfg_factory, tmp_path: Path, task: str, case: str, caplog
) -> None:
    with caplog.at_level(logging.WARNING):
        metrics = train(cfg_factory(*TASKS[task], *SHORT_RUNS[case]))
    assert math.isfinite(metrics["test/loss"])
    last = tmp_path / "checkpoints" / "last.ckpt"
    assert last.is_file()
    assert "state_dict" in torch.load(last, weights_only=True)
    if case == "no validation":
        notes = [r.getMessage() for r in caplog.records if "validation is off" in r.getMessage()]
        assert len(notes) == 1 and "early stopping" in notes[0]
        assert list((tmp_path / "checkpoints").glob("epoch_*.ckpt"))  # the last epoch's


@requires_data
def test_a_cpu_budget_stops_training_once_the_process_has_used_it(
    cfg_factory, one_thread, caplog
) -> None:
    from seqmodels.callbacks import CPUTimeBudget

    cfg = cfg_factory("task=char_lm", "data.block_size=32", "trainer.max_epochs=1000")
    cfg.callbacks.cpu_budget.seconds = 3
    before = time.process_time()
    with caplog.at_level(logging.INFO):
        train(cfg)
    used = time.process_time() - before
    stops = [r.getMessage() for r in caplog.records if "CPU budget of 3 s used" in r.getMessage()]
    assert len(stops) == 1, stops
    assert 3 <= used < 60  # the budget, then the test of the best checkpoint
    with pytest.raises(ConfigError, match="callbacks.cpu_budget.seconds must be positive"):
        CPUTimeBudget(seconds=0)


def test_a_cpu_budget_stops_within_the_first_epoch_whatever_min_epochs_says(
    cfg_factory, one_thread, caplog, tmp_path
) -> None:
    """The long-range tasks' epoch is 500 steps: trainer.min_epochs=1 must not carry a run
    past its budget to the end of it."""
    cfg = cfg_factory("task=long_range", "data.length=1000", "data.eval_batches=1")
    cfg.callbacks.cpu_budget.seconds = 2
    cfg.trainer.update(min_epochs=1, max_epochs=3, limit_train_batches=None)
    with caplog.at_level(logging.INFO):
        metrics = train(cfg)
    stops = [r.getMessage() for r in caplog.records if "CPU budget of 2 s used" in r.getMessage()]
    assert len(stops) == 1, stops
    step = int(stops[0].split("at step ")[1].split(":")[0])
    last = torch.load(tmp_path / "checkpoints" / "last.ckpt", weights_only=True)
    assert step == last["global_step"] < 500  # stopped where the budget ran out
    assert "test/loss" in metrics  # and the run still ends with its test


class _CPUSteps(L.LightningModule):
    """5 ms of CPU a step; validation logs a metric that never improves."""

    def __init__(self) -> None:
        super().__init__()
        self.lin = torch.nn.Linear(4, 1)

    def training_step(self, batch, _):
        start = time.process_time()
        while time.process_time() - start < 0.005:
            pass
        return self.lin(batch[0]).pow(2).mean()

    def validation_step(self, batch, _):
        self.log("val", torch.tensor(1.0))

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.0)


def test_a_cpu_budget_stops_even_after_early_stopping_asked_first(one_thread) -> None:
    """Early stopping signals first, trainer.min_epochs=1 holds training open; the budget must
    still end it within the epoch of 500 steps."""
    from lightning.pytorch.callbacks import EarlyStopping
    from torch.utils.data import DataLoader, TensorDataset

    from seqmodels.callbacks import CPUTimeBudget

    def loader(n: int) -> DataLoader:
        return DataLoader(TensorDataset(torch.randn(n, 4)), batch_size=1)

    trainer = L.Trainer(
        min_epochs=1,
        max_epochs=3,
        val_check_interval=10,
        limit_val_batches=1,
        callbacks=[EarlyStopping("val", patience=0), CPUTimeBudget(seconds=0.3)],
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    trainer.fit(_CPUSteps(), loader(500), loader(1))
    assert 20 <= trainer.global_step < 200  # the budget is about 60 steps; the epoch 500


@requires_data
def test_cli_run_shorter_than_an_epoch_exits_cleanly(tmp_path: Path) -> None:
    """The command from the issue: fewer steps than an epoch, no validation ever reached."""
    from conftest import run_train_cli

    result = run_train_cli(
        "task=char_lm",
        "model.hidden_size=16",
        "trainer.max_steps=3",
        "trainer.accelerator=cpu",
        "callbacks.progress_bar=null",
        f"hydra.run.dir={tmp_path}/run",
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert (tmp_path / "run" / "checkpoints" / "last.ckpt").is_file()
    assert "test/loss" in result.stdout + result.stderr
