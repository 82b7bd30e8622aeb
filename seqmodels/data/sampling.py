"""DataLoaders for a split: resumable shuffling for training, each item once for evaluation."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch.distributed as dist
from lightning.pytorch.overrides.distributed import UnrepeatedDistributedSampler
from torch.utils.data import DataLoader, Dataset, Sampler

from seqmodels.data.buckets import LengthBuckets
from seqmodels.data.resumable import ResumableDataLoader


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


def split_loader(
    dataset: Dataset,
    train: bool,
    batch_size: int,
    num_workers: int,
    collate_fn: Callable[[list[Any]], Any] | None = None,
    lengths: list[int] | None = None,
) -> DataLoader:
    """The training loader shuffles and can resume mid-epoch (:mod:`seqmodels.data.resumable`),
    in batches of similar length where ``lengths`` are given (:mod:`seqmodels.data.buckets`);
    evaluation loaders keep order and see every item once (:func:`eval_sampler`)."""
    common = {
        "batch_size": batch_size,
        "collate_fn": collate_fn,
        "num_workers": num_workers,
        "persistent_workers": num_workers > 0,
    }
    if train:
        if lengths is not None:
            sampler = LengthBuckets(lengths, batch_size)
            return ResumableDataLoader(dataset, sampler=sampler, **common)
        return ResumableDataLoader(dataset, shuffle=True, **common)
    return DataLoader(dataset, sampler=eval_sampler(dataset), **common)
