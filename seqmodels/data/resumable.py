"""A training DataLoader that Lightning can checkpoint mid-epoch and resume exactly."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import torch
import torch.distributed as dist
from torch.utils.data import DataLoader, Dataset, Sampler


def shared_seed() -> int:
    """``torch.initial_seed()``, the same in every process of a distributed run.

    With ``seed`` set, every process seeds torch alike; with ``seed=null`` each draws its own,
    and processes splitting different permutations would see some examples twice and others
    never in an epoch. So under DDP process 0's seed is broadcast to the others.
    """
    seed = torch.initial_seed()
    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        box = [seed]
        dist.broadcast_object_list(box, src=0)
        seed = int(box[0])
    return seed


class EpochShuffle(Sampler[int]):
    """A permutation of ``range(size)`` that depends only on ``seed`` and the epoch.

    Lightning calls ``set_epoch`` before each epoch, so a resumed run draws the same order as
    the uninterrupted one did, and shuffling leaves the global RNG (dropout) alone.
    ``seed`` defaults to :func:`shared_seed`: the run's ``seed`` once it is set, and one seed
    for all processes of a distributed run even without it.
    """

    def __init__(self, size: int, seed: int | None = None) -> None:
        self.size = size
        self.seed = shared_seed() if seed is None else seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.size

    def __iter__(self) -> Iterator[int]:
        generator = torch.Generator().manual_seed(self.seed + self.epoch)
        return iter(torch.randperm(self.size, generator=generator).tolist())


class ResumableDataLoader(DataLoader):
    """A ``DataLoader`` with the ``state_dict`` / ``load_state_dict`` pair Lightning looks for.

    Lightning stores the training loader's state in every checkpoint and, when resuming from
    one written mid-epoch, loads it before iterating; the next pass then skips the batches the
    interrupted pass had already yielded. ``shuffle=True`` uses :class:`EpochShuffle` (the same
    order again for the same epoch); the loader's own ``generator`` seeds workers, so starting
    a pass draws nothing from the global RNG either.
    """

    def __init__(
        self, dataset: Dataset, *args: Any, shuffle: bool = False, sampler: Any = None, **kwargs
    ) -> None:
        if shuffle and sampler is None:
            sampler, shuffle = EpochShuffle(len(dataset)), False  # type: ignore[arg-type]
        if kwargs.get("generator") is None:
            kwargs["generator"] = torch.Generator().manual_seed(torch.initial_seed())
        super().__init__(dataset, *args, shuffle=shuffle, sampler=sampler, **kwargs)
        self._yielded = 0
        self._skip = 0

    def __iter__(self) -> Iterator[Any]:  # type: ignore[override]
        skip, self._skip = self._skip, 0
        self._yielded = 0
        for batch in super().__iter__():
            self._yielded += 1
            if self._yielded > skip:
                yield batch

    def state_dict(self) -> dict[str, int]:
        state = {"batches": self._yielded}
        if isinstance(self.sampler, EpochShuffle):  # LengthBuckets too
            state["seed"] = self.sampler.seed
        return state

    def load_state_dict(self, state: dict[str, int]) -> None:
        if isinstance(self.sampler, EpochShuffle) and "seed" in state:
            self.sampler.seed = state["seed"]
        # A pass that had finished resumes as a fresh one.
        self._skip = state["batches"] if state["batches"] < len(self) else 0
