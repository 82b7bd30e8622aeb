"""Two "nodes" of one process each, started by hand as torchrun or SLURM would start them."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import DATA_DIR, REPO, requires_data
from hydra import compose, initialize_config_dir
from tb_events import scalar_tags
from test_ddp_agreement import free_port

from seqmodels.evaluate import evaluate
from seqmodels.train import CONFIG_DIR

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


def start_node(rank: int, port: int, run_dir: Path, overrides: list[str]) -> subprocess.Popen:
    """``scripts/train.py`` as node ``rank`` of 2, one process each (``trainer.num_nodes=2``)."""
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
        command, cwd=run_dir.parent, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
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
