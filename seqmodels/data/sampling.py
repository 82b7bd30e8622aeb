"""Evaluation sampling that sees every item exactly once, also across DDP processes."""

from __future__ import annotations

import torch.distributed as dist
from lightning.pytorch.overrides.distributed import UnrepeatedDistributedSampler
from torch.utils.data import Dataset, Sampler


def eval_sampler(dataset: Dataset) -> Sampler | None:
    """Under DDP, give each process a disjoint share of ``dataset``, without padding.

    Lightning's default ``DistributedSampler`` repeats items so every process gets the same
    count, which would count them twice in val/test metrics. With this sampler the processes'
    shares add up to the split exactly (their batch counts may differ by one, which is safe:
    nothing syncs per evaluation step, metrics sync their summed states once per epoch, and
    ``trainer=ddp`` turns off DDP's per-forward buffer broadcast). ``None`` (a plain
    sequential loader) in a single process.
    """
    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        return UnrepeatedDistributedSampler(dataset, shuffle=False)
    return None
