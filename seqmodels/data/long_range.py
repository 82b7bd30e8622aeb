"""DataModule for the generated long-range problems (``data=adding``, ``data=copy``)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import lightning as L
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from seqmodels.core.errors import ConfigError
from seqmodels.data.generators import adding_batch, copy_batch

PROBLEMS = ("adding", "copy")
SPLITS = ("train", "val", "test")


def split_base_seed(seed: int, split: str) -> int:
    """A 32-bit seed for ``(seed, split)``, hashed (torch's CPU generator keeps 32 bits of a
    seed, so ``seed * big + offset`` schemes collide); batch ``i`` uses ``base + i``."""
    return int(np.random.SeedSequence([seed, SPLITS.index(split)]).generate_state(1)[0])


class GeneratedBatches(Dataset):
    """Item ``i`` is a whole batch drawn from a generator seeded with ``(seed, split, i)``."""

    def __init__(self, problem: str, seed: int, split: str, batch_size: int, size: int, **sizes):
        self.problem, self.batch_size, self.size, self.sizes = problem, batch_size, size, sizes
        self.base = split_base_seed(seed, split)

    def __len__(self) -> int:
        return self.size

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        generator = torch.Generator().manual_seed((self.base + index) % (1 << 32))
        if self.problem == "adding":
            return adding_batch(generator, self.batch_size, self.sizes["length"])
        return copy_batch(generator, self.batch_size, **self.sizes)


class FreshEachEpoch(Sampler[int]):
    """Indices ``epoch * n .. epoch * n + n - 1``: every training step gets a batch never seen.

    Lightning calls ``set_epoch`` before each epoch, so the batches depend only on the seed,
    the epoch and the step (a resumed run draws the same ones).
    """

    def __init__(self, steps: int) -> None:
        self.steps, self.epoch = steps, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.steps

    def __iter__(self) -> Iterator[int]:
        start = self.epoch * self.steps
        return iter(range(start, start + self.steps))


class LongRangeDataModule(L.LightningDataModule):
    """Generated data: no download, deterministic per ``seed``, a fresh batch every step.

    ``length`` is the whole sequence length (for ``copy`` it includes the ``copy_length``
    symbols and the ``copy_length`` recall steps). An epoch is ``steps_per_epoch`` training
    batches; validation and test are fixed sets of ``eval_batches`` batches each.
    """

    kind = "long_range"

    def __init__(
        self,
        name: str = "adding",
        length: int = 100,
        batch_size: int = 64,
        eval_batch_size: int = 256,
        steps_per_epoch: int = 500,
        eval_batches: int = 8,
        num_symbols: int = 8,
        copy_length: int = 5,
        seed: int | None = 0,
        num_workers: int = 0,
    ) -> None:
        super().__init__()
        if name not in PROBLEMS:
            raise ConfigError(f"data.name must be one of {', '.join(PROBLEMS)}, got {name!r}")
        for option, value in (
            ("length", length),
            ("batch_size", batch_size),
            ("eval_batch_size", eval_batch_size),
            ("steps_per_epoch", steps_per_epoch),
            ("eval_batches", eval_batches),
        ):
            if not isinstance(value, int) or value < 1:
                raise ConfigError(f"data.{option} must be a positive integer, got {value!r}")
        self.name, self.length, self.seed = name, length, 0 if seed is None else seed
        self.batch_size, self.eval_batch_size = batch_size, eval_batch_size
        self.steps_per_epoch, self.eval_batches, self.num_workers = (
            steps_per_epoch,
            eval_batches,
            num_workers,
        )
        self.num_symbols, self.copy_length = num_symbols, copy_length
        self.sizes: dict[str, int] = {"length": length}
        if name == "copy":
            self.sizes |= {"num_symbols": num_symbols, "copy_length": copy_length}
        try:  # a bad size fails now, naming the option, not in the first training step
            self._batches("val", 1, 1)[0]
        except ValueError as err:
            raise ConfigError(str(err)) from err

    def vocab_kwargs(self) -> dict[str, Any]:
        """What the task module needs to know about the problem (plain values)."""
        return {
            "problem": self.name,
            "num_symbols": self.num_symbols,
            "copy_length": self.copy_length,
        }

    def _batches(self, split: str, batch_size: int, size: int) -> GeneratedBatches:
        return GeneratedBatches(self.name, self.seed, split, batch_size, size, **self.sizes)

    def _loader(self, split: str, batch_size: int, size: int, sampler: Sampler | None = None):
        dataset = self._batches(split, batch_size, size)
        # A loader's own generator: starting a pass draws nothing from the global RNG (dropout).
        generator = torch.Generator().manual_seed(self.seed)
        return DataLoader(
            dataset,
            batch_size=None,
            sampler=sampler,
            num_workers=self.num_workers,
            generator=generator,
        )

    def train_dataloader(self) -> DataLoader:
        sampler = FreshEachEpoch(self.steps_per_epoch)
        return self._loader("train", self.batch_size, self.steps_per_epoch, sampler)

    def val_dataloader(self) -> DataLoader:
        return self._loader("val", self.eval_batch_size, self.eval_batches)

    def test_dataloader(self) -> DataLoader:
        return self._loader("test", self.eval_batch_size, self.eval_batches)
