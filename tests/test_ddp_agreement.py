"""Processes of a distributed run decide together: one NaN stops all; one shuffle for all."""

from __future__ import annotations

import os
import socket
import time
from pathlib import Path

import torch
import torch.multiprocessing as mp
from conftest import REPO, TINY, requires_data, run_train_cli
from lightning.fabric.utilities.distributed import DistributedSamplerWrapper

from seqmodels.data.resumable import ResumableDataLoader


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _shares_worker(rank: int, port: int, results) -> None:
    torch.distributed.init_process_group(
        "gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=2
    )
    torch.manual_seed(1000 + rank)  # seed=null: every process draws its own initial seed
    loader = ResumableDataLoader(list(range(40)), shuffle=True, batch_size=4)
    # What Lightning does to a custom sampler under DDP.
    sampler = DistributedSamplerWrapper(loader.sampler, num_replicas=2, rank=rank, shuffle=False)
    sampler.set_epoch(0)
    results[rank] = list(sampler)
    torch.distributed.destroy_process_group()


def test_seedless_processes_split_one_permutation() -> None:
    results = mp.Manager().dict()
    mp.spawn(_shares_worker, args=(free_port(), results), nprocs=2, join=True)
    first, second = results[0], results[1]
    assert len(first) == len(second) == 20
    assert sorted(first + second) == list(range(40))  # every example once per epoch


@requires_data
def test_ddp_nan_on_one_process_stops_every_process(tmp_path: Path) -> None:
    env_path = os.environ.get("PYTHONPATH", "")
    os.environ["PYTHONPATH"] = f"{REPO / 'tests'}{os.pathsep}{env_path}"  # nan_poison in ranks
    try:
        start = time.monotonic()
        result = run_train_cli(
            "trainer=ddp", "trainer.accelerator=cpu", "trainer.devices=2", *TINY,
            "trainer.limit_train_batches=6", "trainer.max_epochs=2",
            "callbacks.finite_loss=null",  # re-added after the poison, so it sees the NaN
            "+callbacks.poison._target_=nan_poison.NaNOnRank",
            "+callbacks.poison.step=8",  # epoch 1, batch 1: after epoch 0's checkpoints
            "+callbacks.finite._target_=seqmodels.callbacks.finite_loss.FiniteLoss",
            "hydra.run.dir=run", cwd=tmp_path, timeout=240,
        )  # fmt: skip
    finally:
        os.environ["PYTHONPATH"] = env_path
    took = time.monotonic() - start
    assert result.returncode == 1, result.stderr[-3000:]
    assert "train/loss is not finite at step 8 on another process" in result.stderr
    assert "Traceback" not in result.stderr
    assert took < 200  # not a collective timeout (30 minutes by default)
    saved = sorted(p.name for p in (tmp_path / "run" / "checkpoints").iterdir())
    assert saved == ["epoch_000.ckpt", "last.ckpt"]  # nothing written after the bad step
    last = torch.load(tmp_path / "run" / "checkpoints" / "last.ckpt", weights_only=True)
    assert last["global_step"] == 6
