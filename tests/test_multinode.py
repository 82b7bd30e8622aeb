"""Two "nodes" of one process each, started by hand as torchrun or SLURM would start them."""

from __future__ import annotations

import contextlib
import math
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import torch
from conftest import DATA_DIR, REPO, requires_data
from hydra import compose, initialize_config_dir
from tb_events import scalar_steps, scalar_tags
from test_ddp_agreement import free_port

from seqmodels.commands.evaluate import evaluate
from seqmodels.commands.train import CONFIG_DIR

TINY_RUN = [
    "model.embedding_dim=16",
    "model.hidden_size=16",
    "trainer.max_epochs=1",
    "trainer.limit_train_batches=4",
    "trainer.limit_val_batches=1.0",  # the whole split, to compare with one process
    "trainer.log_every_n_steps=1",
    "+trainer.enable_progress_bar=false",
    "callbacks.progress_bar=null",
    "num_threads=1",
]
TASKS = {
    "char_lm": ["task=char_lm", "data.batch_size=8", "data.block_size=32", "data.eval_window=64"],
    "slot_filling": ["data.eval_batch_size=64"],
}

# What a 2-node run logs, compared with one process evaluating its checkpoint.
EXACT = {
    "char_lm": [],
    "slot_filling": ["f1", "precision", "recall", "token_acc", "intent_acc", "sent_acc"],
}
CLOSE = {"char_lm": ["loss", "bpc", "loss_windowed"], "slot_filling": ["loss"]}


def start_node(
    rank: int, port: int, run_dir: Path, overrides: list[str], output: Any = subprocess.PIPE
) -> subprocess.Popen:
    """``scripts/train.py`` as node ``rank`` of 2, one process each (``trainer.num_nodes=2``);
    its terminal output goes to ``output`` (a pipe, or an open file)."""
    env = {
        **os.environ,
        "SEQMODELS_DATA_DIR": str(DATA_DIR),
        "NODE_RANK": str(rank),
        "MASTER_ADDR": "127.0.0.1",
        "MASTER_PORT": str(port),
        "WORLD_SIZE": "2",
        "HYDRA_FULL_ERROR": "0",
    }
    command = [
        sys.executable,
        str(REPO / "scripts" / "train.py"),
        "trainer=ddp",
        "trainer.accelerator=cpu",
        "trainer.devices=1",
        "trainer.num_nodes=2",
        f"hydra.run.dir={run_dir}",
        *overrides,
    ]
    return subprocess.Popen(
        command, cwd=run_dir.parent, env=env, stdout=output, stderr=subprocess.STDOUT
    )


def run_two_nodes(run_dir: Path, overrides: list[str]) -> list[str]:
    port = free_port()
    nodes = [start_node(rank, port, run_dir, overrides) for rank in (0, 1)]
    outputs = [node.communicate(timeout=300)[0].decode() for node in nodes]
    for node, output in zip(nodes, outputs):
        assert node.returncode == 0, output[-3000:]
    return outputs


def task_data(task: str, tmp_path: Path) -> list[str]:
    """The char LM reads a text of its own, with its token file beside it; slot filling ATIS."""
    if task != "char_lm":
        return []
    text = tmp_path / "text.txt"
    text.write_text("".join(f"the cat sat on mat {i}.\n" for i in range(900)), encoding="utf-8")
    return [f"data.path={text}", f"data.cache_dir={tmp_path}/tokens"]


def evaluate_alone(ckpt: Path, split: str, out: Path, data: list[str]) -> dict[str, float]:
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        cfg = compose(
            config_name="eval",
            overrides=[
                f"ckpt_path={ckpt}",
                f"split={split}",
                f"paths.output_dir={out}",
                "trainer.accelerator=cpu",
                "+trainer.enable_progress_bar=false",
                *data,
            ],
        )
    return evaluate(cfg)


@requires_data
@pytest.mark.slow  # two Python processes per run (~1.5 min here); tests/test_scale.py runs DDP
@pytest.mark.parametrize("task", list(TASKS))
def test_two_nodes_share_one_run_and_match_one_process(task: str, tmp_path: Path) -> None:
    data = task_data(task, tmp_path)
    before = set(tmp_path.iterdir())
    run_dir = tmp_path / "run"
    outputs = run_two_nodes(run_dir, [*TASKS[task], *TINY_RUN, *data])
    assert "GLOBAL_RANK: 1, MEMBER: 2/2" in outputs[1]
    new = set(tmp_path.iterdir()) - before - {tmp_path / "tokens"}
    assert new == {run_dir}  # one run folder for both nodes
    logged = scalar_tags(run_dir / "tensorboard")
    assert len(logged["train/loss"]) == 4  # one run, logged once (by rank 0)

    ckpt = run_dir / "checkpoints" / "last.ckpt"
    extra = [f"data.data_dir={DATA_DIR}"] if task != "char_lm" else []
    for split in ("val", "test"):
        alone = evaluate_alone(ckpt, split, tmp_path / f"eval_{split}", extra)
        # Counts summed over both ranks: the very same numbers.
        for name in EXACT[task]:
            assert alone[f"{split}/{name}"] == logged[f"{split}/{name}"][-1], name
        # Sums of float32 losses, added in another order: equal up to rounding.
        for name in CLOSE[task]:
            assert alone[f"{split}/{name}"] == pytest.approx(
                logged[f"{split}/{name}"][-1], rel=1e-5
            ), name


# A run long enough to be killed in: 3 epochs of 3 steps, last.ckpt every 2 steps (2, 4, 8:
# not at an epoch's last step) and after each validation.
STEPS = 9
RESUMABLE_RUN = [
    "model.embedding_dim=16",
    "model.hidden_size=16",
    "trainer.max_epochs=100",
    f"trainer.max_steps={STEPS}",
    "trainer.limit_train_batches=3",
    "trainer.limit_val_batches=1",
    "trainer.limit_test_batches=1",
    "trainer.log_every_n_steps=1",
    "callbacks.step_checkpoint.every_n_train_steps=2",
    "callbacks.gate_stats=null",
    "callbacks.grad_flow=null",
    "callbacks.text_samples=null",
    "+trainer.enable_progress_bar=false",
    "callbacks.progress_bar=null",
    "num_threads=1",
]
SURVIVOR_EXITS_WITHIN = 60  # seconds; a collective would wait 30 minutes by default


def wait_for(path: Path, nodes: list[subprocess.Popen], timeout: float) -> None:
    """Return once ``path`` exists; fail if a node stops or ``timeout`` passes first."""
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert all(node.poll() is None for node in nodes), f"a node stopped before {path}"
        assert time.monotonic() < deadline, f"no {path} after {timeout} s"
        time.sleep(0.02)


@requires_data
@pytest.mark.slow  # three 2-node runs a case
@pytest.mark.parametrize(("task", "killed"), [("slot_filling", 1), ("char_lm", 0)])
def test_a_killed_node_stops_the_other_and_both_resume(
    task: str, killed: int, tmp_path: Path
) -> None:
    overrides = [*TASKS[task], *RESUMABLE_RUN, *task_data(task, tmp_path)]
    run_dir = tmp_path / "run"
    last = run_dir / "checkpoints" / "last.ckpt"
    logs = [tmp_path / f"node_{rank}.log" for rank in (0, 1)]
    port = free_port()
    with logs[0].open("wb") as out_0, logs[1].open("wb") as out_1:
        nodes = [
            start_node(r, port, run_dir, overrides, out) for r, out in enumerate((out_0, out_1))
        ]
        try:
            wait_for(last, nodes, timeout=120)
            nodes[killed].kill()  # SIGKILL: nothing saved, nothing said to the other node
            nodes[killed].wait()
            survivor, start = nodes[1 - killed], time.monotonic()
            with contextlib.suppress(subprocess.TimeoutExpired):
                survivor.wait(timeout=SURVIVOR_EXITS_WITHIN)
            took = time.monotonic() - start
        finally:
            for node in nodes:  # whatever went wrong, leave no process behind
                if node.poll() is None:
                    node.kill()
                    node.wait()
    output = logs[1 - killed].read_text()
    assert took < SURVIVOR_EXITS_WITHIN, f"node {1 - killed} hung after the kill:\n{output[-3000:]}"
    assert survivor.returncode == 1, output[-3000:]
    # One line that says what happened and what to run, not a traceback.
    assert "error: another process of this distributed run stopped" in output, output[-3000:]
    assert f"this is rank {1 - killed} of 2" in output, output[-3000:]
    assert "ckpt_path=last" in output
    assert "Traceback" not in output, output[-3000:]
    saved = torch.load(last, weights_only=True)["global_step"]
    assert 2 <= saved < STEPS  # killed mid-run, after a checkpoint

    # Both nodes again, the same command plus ckpt_path=last (docs/scaling-out.md).
    before = set(tmp_path.iterdir())
    events_before = set((run_dir / "tensorboard").glob("events.out.tfevents.*"))
    run_two_nodes(run_dir, [*overrides, "ckpt_path=last"])
    assert set(tmp_path.iterdir()) == before  # the same run folder, nothing new beside it
    assert torch.load(last, weights_only=True)["global_step"] == STEPS
    resumed = set((run_dir / "tensorboard").glob("events.out.tfevents.*")) - events_before
    steps = sorted(step for path in resumed for step in scalar_steps(path, "train/loss"))
    assert steps == list(range(saved, STEPS)), (saved, steps)  # from the saved step, not 0
    logged = scalar_tags(run_dir / "tensorboard")
    main = "bpc" if task == "char_lm" else "f1"
    assert all(math.isfinite(v) for v in logged["train/loss"] + logged[f"test/{main}"])
    assert logged["val/loss"][-1] < logged["val/loss"][0]  # it went on learning

    # Each process took back its own random state (and carried state): the resumed run ends
    # where the same run without a kill ends.
    whole = tmp_path / "whole"
    run_two_nodes(whole, overrides)
    uninterrupted = scalar_tags(whole / "tensorboard")
    for name in ("val/loss", "test/loss", f"test/{main}"):
        assert logged[name][-1] == uninterrupted[name][-1], name
    print(f"killed node {killed} at step >= {saved}; node {1 - killed} exited in {took:.1f} s")
