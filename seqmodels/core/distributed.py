"""What each process of a distributed run keeps for itself across a checkpoint.

Rank 0 alone writes a checkpoint, so state that differs between processes (the random
generators after different draws, the char LM's carried state over different streams) would
come back as rank 0's on every process. :func:`gathered` collects such a value from every
process while the checkpoint is made (every process makes it; rank 0 writes it), and
:func:`own_share` picks this process's entry when the run resumes.
"""

from __future__ import annotations

from typing import Any

import lightning as L
import torch.distributed as dist


def gathered(trainer: L.Trainer, value: Any) -> list[Any] | None:
    """``value`` of every process, in rank order; None outside a distributed run."""
    if trainer.world_size < 2 or not (dist.is_available() and dist.is_initialized()):
        return None
    values: list[Any] = [None] * trainer.world_size
    dist.all_gather_object(values, value)
    return values


def own_share(trainer: L.Trainer | None, values: list[Any] | None) -> Any | None:
    """This process's entry of a :func:`gathered` list; None when the run has another size."""
    if trainer is None or values is None or len(values) != trainer.world_size:
        return None
    return values[trainer.global_rank]
