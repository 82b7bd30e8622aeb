"""A lost distributed peer is reported as such only in a distributed run."""

from __future__ import annotations

from pathlib import Path

import torch
import torch.distributed as dist

from seqmodels.core.errors import error_message

BROKEN_PIPE = RuntimeError("DataLoader worker (pid 4242) exited: [Errno 32] Broken pipe")


def test_a_broken_pipe_in_one_process_is_not_a_lost_peer() -> None:
    """``import torch`` loads torch.distributed; no process group was set up, so this is a
    single-process error and keeps its own message (a bug: None, the traceback is shown)."""
    assert torch.distributed is dist and not dist.is_initialized()
    assert error_message(BROKEN_PIPE) is None


def test_a_broken_pipe_under_a_process_group_names_the_rank(tmp_path: Path) -> None:
    store = dist.FileStore(str(tmp_path / "store"), 1)
    dist.init_process_group("gloo", store=store, rank=0, world_size=1)
    try:
        message = error_message(BROKEN_PIPE)
    finally:
        dist.destroy_process_group()
    assert message is not None
    assert message.startswith("another process of this distributed run stopped")
    assert "this is rank 0 of 1" in message and "ckpt_path=last" in message
