"""DataModule for character-level language modelling on one UTF-8 text file."""

from __future__ import annotations

import logging
from pathlib import Path

import lightning as L
import torch
from torch.utils.data import DataLoader, Dataset

from seqmodels.data.download import DatasetError, ensure_dataset
from seqmodels.data.resumable import ResumableDataLoader
from seqmodels.data.sampling import eval_sampler, split_loader
from seqmodels.data.streams import Streams
from seqmodels.data.text_files import read_text
from seqmodels.data.vocab import Vocab
from seqmodels.errors import ConfigError

log = logging.getLogger(__name__)


class Windows(Dataset):
    """Non-overlapping windows: item ``i`` is ``(x, y)`` with ``y`` the next character of ``x``."""

    def __init__(self, ids: torch.Tensor, block_size: int) -> None:
        self.ids, self.block_size = ids, block_size
        self.count = (len(ids) - 1) // block_size

    def __len__(self) -> int:
        return self.count

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        start = i * self.block_size
        chunk = self.ids[start : start + self.block_size + 1]
        return chunk[:-1], chunk[1:]


class CharLMDataModule(L.LightningDataModule):
    """The first ``1 - val_fraction`` of the text trains, the rest validates (nanoGPT's split).

    Training (``stateful=True``, the default) reads ``batch_size`` contiguous streams window by
    window, in order, so the model carries its state across batches (truncated BPTT, see
    :mod:`seqmodels.data.streams`); ``stateful=False`` reads independent windows in random
    order. Evaluation has two loaders: ``eval_streams`` contiguous streams over the held-out
    text (every character predicted once, with carried state: ``val/loss``), and independent
    windows of ``eval_window`` characters (``val/loss_windowed``, nanoGPT's protocol; ``null``
    skips it). There is no separate test split: ``test`` evaluates the same held-out tail.
    The vocabulary is every character of the file (or ``vocab`` as saved in a checkpoint).
    """

    kind = "text"

    def __init__(
        self,
        name: str = "tinyshakespeare",
        path: str | None = None,
        data_dir: str = "~/.cache/seqmodels",
        download: bool = True,
        block_size: int = 128,
        batch_size: int = 64,
        eval_batch_size: int = 256,
        val_fraction: float = 0.1,
        num_workers: int = 0,
        vocab: list[str] | None = None,
        stateful: bool = True,
        eval_streams: int = 16,
        eval_window: int | None = 256,
    ) -> None:
        super().__init__()
        if eval_streams < 1:
            raise ConfigError(f"data.eval_streams must be >= 1, got {eval_streams}")
        if eval_window is not None and eval_window < 1:
            raise ConfigError(f"data.eval_window must be >= 1 or null, got {eval_window}")
        if block_size < 1:
            raise ConfigError("data.block_size must be >= 1")
        if batch_size < 1 or eval_batch_size < 1:
            raise ConfigError("data.batch_size and data.eval_batch_size must be >= 1")
        if not 0.0 < val_fraction < 1.0:
            raise ConfigError(f"data.val_fraction must be in (0, 1), got {val_fraction}")
        self.name, self.path, self.data_dir, self.download = name, path, data_dir, download
        self.block_size, self.batch_size, self.eval_batch_size = (
            block_size,
            batch_size,
            eval_batch_size,
        )
        self.val_fraction, self.num_workers = val_fraction, num_workers
        self.stateful, self.eval_streams, self.eval_window = stateful, eval_streams, eval_window
        self.vocab = Vocab(vocab, unk=None) if vocab else None
        self.train_ids: torch.Tensor | None = None
        self.val_ids: torch.Tensor | None = None

    @property
    def file(self) -> Path:
        if self.path is not None:
            return Path(self.path).expanduser()
        return Path(self.data_dir).expanduser() / self.name / "input.txt"

    def prepare_data(self) -> None:
        if self.path is None:
            ensure_dataset(self.name, self.data_dir, download=self.download)

    def setup(self, stage: str | None = None) -> None:
        if self.train_ids is not None:
            return
        text = read_text(
            self.file,
            hint="set data.path= to a UTF-8 text file, or SEQMODELS_DATA_DIR (paths.data_dir=) "
            f"to a folder holding {self.name}/input.txt",
        )
        if self.vocab is None:
            self.vocab = Vocab(sorted(set(text)), unk=None)
        unknown = sorted(set(text) - set(self.vocab.itos))
        if unknown:
            raise DatasetError(f"{self.file} has characters outside the vocabulary: {unknown}")
        ids = torch.tensor(self.vocab.encode(text), dtype=torch.long)
        split = int(len(ids) * (1 - self.val_fraction))
        self.train_ids, self.val_ids = ids[:split], ids[split:]
        if self.eval_window is not None and self.eval_window >= len(self.val_ids):
            log.warning(
                "data.eval_window=%d is longer than the held-out text (%d characters); "
                "val/loss_windowed uses windows of %d",
                self.eval_window,
                len(self.val_ids),
                len(self.val_ids) - 1,
            )
            self.eval_window = len(self.val_ids) - 1
        needs = {
            "train": (self.batch_size if self.stateful else 1) * self.block_size,
            "validation": max(self.eval_streams, self.block_size),
        }
        for part, part_ids in (("train", self.train_ids), ("validation", self.val_ids)):
            if len(part_ids) <= needs[part]:
                raise DatasetError(
                    f"{self.file}: the {part} part has {len(part_ids)} characters, too few for "
                    f"data.block_size={self.block_size}, data.batch_size={self.batch_size}, "
                    f"data.eval_streams={self.eval_streams} and "
                    f"data.eval_window={self.eval_window}; use a longer file or smaller values"
                )

    def vocab_kwargs(self) -> dict[str, list[str]]:
        """The vocabulary as a plain list, the keyword the task module (and this class) takes."""
        assert self.vocab is not None, "call setup() first"
        return {"vocab": list(self.vocab.itos)}

    def train_dataloader(self) -> DataLoader:
        if not self.stateful:
            windows = Windows(self.train_ids, self.block_size)
            return split_loader(windows, True, self.batch_size, self.num_workers)
        # Streams are read in order; each item is already a batch. Resumable mid-epoch.
        streams = Streams(self.train_ids, self.batch_size, self.block_size)
        return ResumableDataLoader(streams, batch_size=None)

    def val_dataloader(self) -> list[DataLoader]:
        """``[carried-state streams, independent windows]`` (the second only with eval_window)."""
        block = max(self.block_size, self.eval_window or 0)
        streams = Streams(self.val_ids, self.eval_streams, block, exact=True)
        loaders = [DataLoader(streams, batch_size=None)]
        if self.eval_window is not None:
            windows = Windows(self.val_ids, self.eval_window)
            loaders.append(
                DataLoader(
                    windows,
                    batch_size=self.eval_batch_size,
                    sampler=eval_sampler(windows),
                    num_workers=self.num_workers,
                )
            )
        return loaders

    def test_dataloader(self) -> list[DataLoader]:
        return self.val_dataloader()
