"""Training batches of sentences of about the same length (``data.bucket=true``).

A batch is padded to its longest sentence, and an LSTM, a CRF and the char features all run
over the padding: with random batches of 16, 40-55% of what the NER sets compute is padding
(docs/ner.md). :class:`LengthBuckets` shuffles as :class:`EpochShuffle` does, then sorts each
pool of ``pool_batches`` batches by length, cuts it into batches and shuffles the batches: every
batch holds sentences of about one length, and the order still changes every epoch. Under DDP
each process takes whole batches (every ``world``-th one), so its batches stay of one length.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import torch
import torch.distributed as dist
from torch.utils.data import DistributedSampler

from seqmodels.data.resumable import EpochShuffle

POOL_BATCHES = 50


class LengthBuckets(EpochShuffle, DistributedSampler):
    """Indices in an order whose consecutive runs of ``batch_size`` are batches of similar
    length (the ``DataLoader`` cuts them so); depends only on the seed and the epoch, so a
    resumed run sees the same batches. The one short batch, if any, comes last.

    Under DDP (``num_replicas`` processes, default: the process group's) process ``rank`` gets
    batches ``rank, rank + world, ...``; the batch list is padded with its first batches to a
    multiple of ``world``, so every process takes the same number of steps. It is a
    ``DistributedSampler`` so that Lightning keeps it rather than dealing its indices out one
    by one, which would mix two buckets in every batch.
    """

    def __init__(
        self,
        lengths: Sequence[int],
        batch_size: int,
        pool_batches: int = POOL_BATCHES,
        seed: int | None = None,
        num_replicas: int | None = None,
        rank: int | None = None,
    ) -> None:
        EpochShuffle.__init__(self, len(lengths), seed)  # not DistributedSampler's: no dataset
        if batch_size < 1 or pool_batches < 1:
            raise ValueError("batch_size and pool_batches must be >= 1")
        grouped = dist.is_available() and dist.is_initialized()
        self.num_replicas = num_replicas or (dist.get_world_size() if grouped else 1)
        self.rank = rank if rank is not None else (dist.get_rank() if grouped else 0)
        if not 0 <= self.rank < self.num_replicas:
            raise ValueError(f"rank {self.rank} is not one of {self.num_replicas} processes")
        self.lengths = torch.as_tensor(list(lengths))
        self.batch_size, self.pool = batch_size, batch_size * pool_batches

    def batches(self) -> list[torch.Tensor]:
        """This epoch's batches, all processes' (shuffled; the short one last)."""
        generator = torch.Generator().manual_seed(self.seed + self.epoch)
        order = torch.randperm(self.size, generator=generator)
        batches: list[torch.Tensor] = []
        for start in range(0, self.size, self.pool):
            pool = order[start : start + self.pool]
            # stable: sentences of one length keep their shuffled order
            pool = pool[torch.sort(self.lengths[pool], stable=True).indices]
            batches.extend(pool.split(self.batch_size))
        last = [batches.pop()] if batches and len(batches[-1]) < self.batch_size else []
        shuffled = [batches[i] for i in torch.randperm(len(batches), generator=generator)]
        return shuffled + last

    def _mine(self) -> list[torch.Tensor]:
        batches = self.batches()
        if self.num_replicas > 1 and batches:
            short = -len(batches) % self.num_replicas
            batches += [batches[i % len(batches)] for i in range(short)]
        return batches[self.rank :: self.num_replicas]

    def __len__(self) -> int:
        return sum(len(b) for b in self._mine()) if self.num_replicas > 1 else self.size

    def __iter__(self) -> Iterator[int]:
        mine = self._mine()
        return iter(torch.cat(mine).tolist() if mine else [])
