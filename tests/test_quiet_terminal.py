"""What a user sees: a short default run of each task prints no warning they cannot act on, the
progress bar shows train/loss and the task's main metric, the test metrics one line."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from conftest import requires_data, run_train_cli

# Small and short, but with the default progress bar, callbacks and logger: what a user sees.
SHORT = [
    "model.embedding_dim=16",
    "model.hidden_size=16",
    "trainer.max_epochs=2",
    "trainer.limit_train_batches=4",
    "trainer.limit_val_batches=2",
    "trainer.limit_test_batches=2",
]
NOISE = re.compile(r"warn|deprecat|\btip\b|flops", re.IGNORECASE)
# Warnings a user can act on, expected in these runs.
EXPECTED = {
    # ATIS's valid/test splits have labels train lacks: the lists are cut to a few and a count.
    "slot_filling": re.compile(r"\[WARNING\] - .*atis: labels never seen in train .* and \d+ more"),
}
TASKS = [
    ("slot_filling", [], "val/f1"),
    ("char_lm", ["task=char_lm"], "val/bpc"),
    ("long_range", ["task=long_range"], "val/loss"),
]


@requires_data
@pytest.mark.parametrize(("task", "overrides", "main_metric"), TASKS, ids=[t[0] for t in TASKS])
def test_a_default_run_prints_no_noise(
    tmp_path: Path, task: str, overrides: list[str], main_metric: str
) -> None:
    proc = run_train_cli(*overrides, *SHORT, cwd=tmp_path)
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, output[-3000:]

    lines = [line for line in re.split(r"[\r\n]+", output) if line.strip()]
    noisy = [line for line in lines if NOISE.search(line)]
    expected = EXPECTED.get(task)
    unexpected = [line for line in noisy if not (expected and expected.search(line))]
    assert not unexpected, "\n".join(unexpected)
    if expected:
        assert [line for line in noisy if expected.search(line)], "the expected warning is gone"
        assert all(len(line) < 500 for line in noisy), "a warning is still one very long line"

    # Through a pipe (as here) no bar, whose every refresh would be a line of the log: one
    # line per epoch with train/loss and the main metric.
    assert "\r" not in proc.stdout, proc.stdout[-3000:]
    epochs = [line for line in lines if re.match(r"epoch \d+/2: ", line)]
    assert [line.split(":")[0] for line in epochs] == ["epoch 0/2", "epoch 1/2"], output[-3000:]
    assert "train/loss=" in epochs[-1] and f"{main_metric}=" in epochs[-1]
    assert "smaller than the logging interval" not in output  # 4 batches < log_every_n_steps
    if task == "slot_filling":  # ATIS's 80-row per-type table stays in the run folder
        assert "micro avg" not in output
        (worst,) = [line for line in lines if "lowest test F1 of" in line]
        path = re.search(r"\S*test_span_report.txt", worst)
        assert path and len(worst) - len(path.group(0)) < 350, worst

    assert "Test metric" not in output  # Lightning's table, one column per DataLoader
    (test_line,) = [line for line in lines if "test metrics: " in line]
    assert f"test/{main_metric.removeprefix('val/')}=" in test_line
    if task == "char_lm":  # both protocols, each named
        assert "test/loss_windowed=" in test_line and "carried state" in test_line
