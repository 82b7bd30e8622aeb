"""DataModule for character-level language modelling on one UTF-8 text file."""

from __future__ import annotations

from pathlib import Path

import lightning as L
import torch
from torch.utils.data import DataLoader, Dataset

from seqmodels.data.download import DatasetError, ensure_dataset
from seqmodels.data.sampling import split_loader
from seqmodels.data.text_files import read_text
from seqmodels.data.vocab import Vocab
from seqmodels.errors import ConfigError


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

    There is no separate test split: ``test`` evaluates the same held-out tail as ``val``, so
    numbers compare with nanoGPT's val loss. The vocabulary is every character of the file
    (or ``vocab`` as saved in a checkpoint).
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
    ) -> None:
        super().__init__()
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
        for part, part_ids in (("train", self.train_ids), ("validation", self.val_ids)):
            if len(part_ids) <= self.block_size:
                raise DatasetError(
                    f"{self.file}: the {part} part has {len(part_ids)} characters, too few for "
                    f"data.block_size={self.block_size}; use a longer file or a smaller block"
                )

    def vocab_kwargs(self) -> dict[str, list[str]]:
        """The vocabulary as a plain list, the keyword the task module (and this class) takes."""
        assert self.vocab is not None, "call setup() first"
        return {"vocab": list(self.vocab.itos)}

    def _loader(self, ids: torch.Tensor, train: bool) -> DataLoader:
        batch_size = self.batch_size if train else self.eval_batch_size
        return split_loader(Windows(ids, self.block_size), train, batch_size, self.num_workers)

    def train_dataloader(self) -> DataLoader:
        return self._loader(self.train_ids, train=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader(self.val_ids, train=False)

    def test_dataloader(self) -> DataLoader:
        return self._loader(self.val_ids, train=False)
