"""Faults lose nothing: NaN losses stop cleanly, Ctrl-C and SIGTERM leave a resumable checkpoint."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import lightning as L
import pytest
import torch
from conftest import REPO
from lightning.pytorch.utilities.exceptions import SIGTERMException

from seqmodels.commands.train import train
from seqmodels.core.errors import NonFiniteLossError

pytestmark = pytest.mark.usefixtures("one_thread")

TEXT = "the quick brown fox jumps over the lazy dog; pack my box with five dozen jugs. " * 40


class SignalAt(L.Callback):
    """Send ``signum`` to this very process as training batch ``step`` starts (mid-epoch)."""

    def __init__(self, step: int, signum: int) -> None:
        self.step, self.signum = step, signum

    def on_train_batch_start(self, trainer: L.Trainer, *args) -> None:
        if trainer.global_step == self.step:
            os.kill(os.getpid(), self.signum)


@pytest.fixture
def text_file(tmp_path: Path) -> Path:
    path = tmp_path / "text.txt"
    path.write_text(TEXT, encoding="utf-8")
    return path


@pytest.fixture
def keep_sigint():
    """Lightning ignores SIGINT after a KeyboardInterrupt (for its shutdown); restore it."""
    handler = signal.getsignal(signal.SIGINT)
    yield
    signal.signal(signal.SIGINT, handler)


def char_lm(cfg_factory, text_file: Path, out: Path, *overrides: str):
    return cfg_factory(
        "task=char_lm",
        "model=gru",
        "model.dropout=0.0",  # (with dropout, the global RNG state must be restored as well)
        f"data.path={text_file}",
        "data.block_size=16",
        "data.batch_size=16",
        "data.eval_window=16",
        "trainer.max_epochs=3",
        "trainer.deterministic=true",
        "trainer.limit_train_batches=1.0",
        "trainer.limit_val_batches=1.0",
        "trainer.limit_test_batches=1.0",
        "seed=3",
        f"paths.output_dir={out}",
        *overrides,
    )


@pytest.mark.parametrize(
    ("signum", "stopped_by"),
    [(signal.SIGINT, SystemExit), (signal.SIGTERM, SIGTERMException)],
    ids=["ctrl-c", "sigterm"],
)
def test_interrupt_mid_epoch_then_resume_matches_uninterrupted(
    cfg_factory, text_file: Path, tmp_path: Path, keep_sigint, signum, stopped_by
) -> None:
    whole = train(char_lm(cfg_factory, text_file, tmp_path / "whole"))

    # 16 streams of 177 characters: 11 batches an epoch; step 15 is in the second epoch, and
    # the carried state must be restored for the resumed run to match.
    cut = tmp_path / "cut"
    signal_at = f"+callbacks.signal._target_={__name__}.SignalAt"
    with pytest.raises(stopped_by):
        train(
            char_lm(
                cfg_factory,
                text_file,
                cut,
                signal_at,
                "+callbacks.signal.step=15",
                f"+callbacks.signal.signum={int(signum)}",
            )
        )
    saved = cut / "checkpoints" / "interrupted.ckpt"
    checkpoint = torch.load(saved, weights_only=True)
    assert checkpoint["global_step"] == 16  # the batch in flight was finished, then saved
    assert checkpoint["epoch"] == 1

    resumed = train(char_lm(cfg_factory, text_file, tmp_path / "resumed", f"ckpt_path={saved}"))
    for name in ("val/loss", "val/bpc", "test/loss", "test/bpc"):
        assert resumed[name] == whole[name], name


def test_nan_loss_stops_naming_the_step_and_keeps_checkpoints(
    cfg_factory, text_file: Path, tmp_path: Path
) -> None:
    # A ReLU RNN overflows once the learning rate jumps by 1e30 after the first epoch.
    cfg = cfg_factory(
        "task=char_lm",
        "model=rnn",
        "model.nonlinearity=relu",
        f"data.path={text_file}",
        "data.block_size=16",
        "trainer.max_epochs=3",
        "task.module.scheduler={_target_:torch.optim.lr_scheduler.StepLR,step_size:1,gamma:1.0e30}",
    )
    with pytest.raises(NonFiniteLossError, match=r"train/loss is (nan|inf) at step \d+ \(epoch 1"):
        train(cfg)
    saved = sorted(p.name for p in (tmp_path / "checkpoints").iterdir())
    assert saved == ["epoch_000.ckpt", "last.ckpt"]  # nothing written after the loss broke
    for name in saved:
        checkpoint = torch.load(tmp_path / "checkpoints" / name, weights_only=True)
        assert checkpoint["epoch"] == 0
        assert all(torch.isfinite(t).all() for t in checkpoint["state_dict"].values())


def test_cli_sigterm_saves_a_checkpoint_and_exits_143(tmp_path: Path) -> None:
    """The real process gets a real SIGTERM while training; it saves, then exits 128 + 15."""
    run = tmp_path / "run"
    text = tmp_path / "text.txt"
    text.write_text(TEXT * 5, encoding="utf-8")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    env.pop("HYDRA_FULL_ERROR", None)
    proc = subprocess.Popen(
        [
            sys.executable,
            str(REPO / "scripts" / "train.py"),
            "task=char_lm",
            f"data.path={text}",
            "data.block_size=16",
            "model.hidden_size=16",
            "model.embedding_dim=16",
            "trainer.max_epochs=1000",
            "trainer.accelerator=cpu",
            "callbacks.early_stopping=null",
            "callbacks.progress_bar=null",
            "+trainer.enable_progress_bar=false",
            f"hydra.run.dir={run}",
        ],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    last = run / "checkpoints" / "last.ckpt"
    deadline = time.monotonic() + 240
    while not last.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.2)  # training has started once the first epoch's checkpoint is there
    proc.send_signal(signal.SIGTERM)
    output, _ = proc.communicate(timeout=120)
    assert proc.returncode == 128 + signal.SIGTERM, output[-3000:]
    assert "Traceback" not in output
    checkpoint = torch.load(run / "checkpoints" / "interrupted.ckpt", weights_only=True)
    assert checkpoint["global_step"] > 0
    log = (run / "train.log").read_text()
    assert "SIGTERM at step" in log and "resume with ckpt_path=" in log

    # Resuming into the same run folder: no warning that its checkpoints/ is not empty.
    resumed = subprocess.run(
        [*proc.args, f"ckpt_path={run / 'checkpoints' / 'interrupted.ckpt'}", "test=false"]
        + [f"trainer.max_steps={checkpoint['global_step'] + 2}"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
    )
    printed = resumed.stdout + resumed.stderr
    assert resumed.returncode == 0, printed[-3000:]
    assert "Restored all states" in printed
    assert "exists and is not empty" not in printed
