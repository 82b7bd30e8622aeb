"""Contiguous text streams read window by window: the data side of truncated BPTT.

char-rnn and torch-rnn train a recurrent LM this way: the text is cut into ``num_streams``
contiguous pieces laid side by side as the rows of a batch, and batch ``k`` holds window ``k``
of every piece. Row ``r`` of batch ``k + 1`` continues row ``r`` of batch ``k``, so the model
can carry its recurrent state from one batch to the next (detached: the truncation).
"""

from __future__ import annotations

import itertools
import warnings
from collections.abc import Iterator

import numpy as np
import torch
import torch.distributed as dist
from torch.utils.data import IterableDataset

from seqmodels.data.token_file import TokenSpan

# Streams are read in the main process only (no workers), so Lightning's caution about the
# length of an iterable dataset split over workers does not apply.
warnings.filterwarnings("ignore", message=r"Your `IterableDataset` has `__len__` defined")

IGNORE = -100  # F.cross_entropy's ignore_index: a target position that does not exist


class Streams(IterableDataset):
    """Item ``k`` is ``(x, y)`` of shape ``[streams, ≤ block_size]``: window ``k`` of each stream.

    ``exact=False`` (training) gives every stream the same length and drops the few characters
    left over. ``exact=True`` (evaluation) predicts every character of ``ids`` after the first
    exactly once: streams differ in length by at most one, and targets past a stream's end are
    ``IGNORE`` (their inputs are padding whose state is never used).

    ``ids`` is a :class:`~seqmodels.data.token_file.TokenSpan` (a token file on disk) or
    a tensor; each item is read from it when asked for, so a stream costs nothing until then.

    Under DDP the streams are cut over the whole text and each process reads its own share
    (``rank``, ``world_size``; default: from ``torch.distributed``): ``num_streams`` of its
    own (training: each process's batch), or with ``shared=True`` a contiguous share of
    ``num_streams`` in all (evaluation: the very streams one process would read, so the
    carried-state loss does not depend on the number of processes). It is an iterable
    dataset, read in order in the main process: Lightning then leaves it alone (a sampler it
    injected under DDP would interleave the windows).
    """

    def __init__(
        self,
        ids: TokenSpan | torch.Tensor,
        num_streams: int,
        block_size: int,
        exact: bool = False,
        rank: int | None = None,
        world_size: int | None = None,
        shared: bool = False,
    ) -> None:
        if rank is None or world_size is None:
            distributed = dist.is_available() and dist.is_initialized()
            rank = dist.get_rank() if distributed else 0
            world_size = dist.get_world_size() if distributed else 1
        self.ids = TokenSpan.of(ids)
        if shared and num_streams < world_size:
            raise ValueError(f"{num_streams} streams cannot be shared by {world_size} processes")
        total = num_streams if shared else num_streams * world_size
        targets = len(self.ids) - 1  # characters that have a predecessor
        if targets < total:
            raise ValueError(f"{targets} characters cannot fill {total} streams")
        base, extra = divmod(targets, total)
        lengths = [base + (1 if exact and s < extra else 0) for s in range(total)]
        starts = [0, *itertools.accumulate(lengths)]
        mine = range(rank * total // world_size, (rank + 1) * total // world_size)
        self.starts = np.array([starts[s] for s in mine], dtype=np.int64)
        self.lengths = np.array([lengths[s] for s in mine], dtype=np.int64)
        width = int(self.lengths.max())
        self.block_size = block_size
        self.count = -(-width // block_size) if exact else width // block_size
        self.width = width

    def __len__(self) -> int:
        return self.count

    def __getitem__(self, k: int) -> tuple[torch.Tensor, torch.Tensor]:
        if not 0 <= k < self.count:
            raise IndexError(k)
        offsets = np.arange(k * self.block_size, min((k + 1) * self.block_size, self.width))
        valid = torch.from_numpy(offsets[None, :] < self.lengths[:, None])  # input o -> o + 1
        ids = self.ids.rows(self.starts + offsets[0], len(offsets) + 1)
        x = ids[:, :-1].masked_fill(~valid, 0)  # padding past a stream's end
        y = ids[:, 1:].masked_fill(~valid, IGNORE)
        return x, y

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        return (self[k] for k in range(self.count))
