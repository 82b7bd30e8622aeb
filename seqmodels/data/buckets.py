"""Training batches of sentences of about the same length (``data.bucket=true``).

A batch is padded to its longest sentence, and an LSTM, a CRF and the char features all run
over the padding: with random batches of 16, half of what NER sets compute is padding
(docs/ner.md). :class:`LengthBuckets` shuffles as :class:`EpochShuffle` does, then sorts each
pool of ``pool_batches`` batches by length, cuts it into batches and shuffles the batches: every
batch holds sentences of about one length, and the order still changes every epoch.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import torch

from seqmodels.data.resumable import EpochShuffle

POOL_BATCHES = 50


class LengthBuckets(EpochShuffle):
    """Indices in an order whose consecutive runs of ``batch_size`` are batches of similar
    length (the ``DataLoader`` cuts them so); depends only on the seed and the epoch, so a
    resumed run sees the same batches. The one short batch, if any, comes last."""

    def __init__(
        self,
        lengths: Sequence[int],
        batch_size: int,
        pool_batches: int = POOL_BATCHES,
        seed: int | None = None,
    ) -> None:
        super().__init__(len(lengths), seed)
        if batch_size < 1 or pool_batches < 1:
            raise ValueError("batch_size and pool_batches must be >= 1")
        self.lengths = torch.as_tensor(list(lengths))
        self.batch_size, self.pool = batch_size, batch_size * pool_batches

    def __iter__(self) -> Iterator[int]:
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
        return iter(torch.cat(shuffled + last).tolist() if self.size else [])
