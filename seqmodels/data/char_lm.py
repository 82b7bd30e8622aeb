"""DataModule for character- (or byte-) level language modelling on texts of any size."""

from __future__ import annotations

import logging
from pathlib import Path

import lightning as L
import torch
import torch.distributed as dist
from torch.utils.data import DataLoader, Dataset

from seqmodels.core.errors import ConfigError
from seqmodels.data.corpora import DEFAULT, LAYOUTS, PARTS, PREPARE, Layout
from seqmodels.data.download import DatasetError, ensure_dataset
from seqmodels.data.resumable import ResumableDataLoader
from seqmodels.data.sampling import eval_sampler, split_loader
from seqmodels.data.streams import Streams
from seqmodels.data.token_file import (
    TokenFile,
    TokenSpan,
    byte_vocab,
    check_unit,
    default_cache_dir,
    encode_file,
    open_bytes,
    scan_vocab,
)
from seqmodels.data.vocab import Vocab

log = logging.getLogger(__name__)


class Windows(Dataset):
    """Non-overlapping windows: item ``i`` is ``(x, y)`` with ``y`` the next character of ``x``."""

    def __init__(self, ids: TokenSpan | torch.Tensor, block_size: int) -> None:
        self.ids, self.block_size = TokenSpan.of(ids), block_size
        self.count = (len(self.ids) - 1) // block_size

    def __len__(self) -> int:
        return self.count

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        start = i * self.block_size
        chunk = self.ids.read(start, start + self.block_size + 1)
        return chunk[:-1], chunk[1:]


class CharLMDataModule(L.LightningDataModule):
    """Train, validation and test text read from token files, a slice at a time.

    The text is encoded once into a token file (:mod:`seqmodels.data.token_file`, cached in
    ``cache_dir``, default the user's cache ``~/.cache/seqmodels/tokens``); every loader reads
    the slices it needs from it, so nothing proportional to the corpus stays in memory and DDP
    processes share one file.
    ``unit="byte"`` models the file's bytes (any file; the 256 byte values are the vocabulary),
    ``"char"`` its characters (UTF-8; the vocabulary is every character of the corpus, or
    ``vocab`` as saved in a checkpoint).

    The parts: a registered corpus with a canonical split uses it, with a real test part
    (enwik8, text8, ptb_char: :mod:`seqmodels.data.corpora`); any other text trains on its
    first ``1 - val_fraction`` and validates on the rest (nanoGPT's split), and ``test``
    evaluates that same held-out tail. ``reverse=True`` reads each part backwards (last
    character first) for a backward LM; the parts hold the same characters as without it.

    Training (``stateful=True``, the default) reads ``batch_size`` contiguous streams window by
    window, in order, so the model carries its state across batches (truncated BPTT, see
    :mod:`seqmodels.data.streams`); ``stateful=False`` reads independent windows in random
    order. Evaluation has two loaders: ``eval_streams`` contiguous streams over the held-out
    text (every character predicted once, with carried state: ``val/loss``), and independent
    windows of ``eval_window`` characters (``val/loss_windowed``, nanoGPT's protocol; ``null``
    skips it).
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
        reverse: bool = False,
        unit: str = "char",
        cache_dir: str | None = None,
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
        if not isinstance(reverse, bool):
            raise ConfigError(f"data.reverse must be true or false, got {reverse!r}")
        self.unit = check_unit(unit)
        if vocab and unit == "byte" and list(vocab) != byte_vocab():
            raise ConfigError("data.unit=byte, but the vocabulary given is not the 256 bytes")
        self.name, self.path, self.data_dir, self.download = name, path, data_dir, download
        self.block_size, self.batch_size, self.eval_batch_size = (
            block_size,
            batch_size,
            eval_batch_size,
        )
        self.val_fraction, self.num_workers = val_fraction, num_workers
        self.stateful, self.eval_streams, self.eval_window = stateful, eval_streams, eval_window
        self.reverse = reverse
        self.cache_dir = cache_dir
        self.vocab = Vocab(vocab, unk=None) if vocab else None
        self.parts: dict[str, TokenSpan] = {}

    @property
    def symbols(self) -> str:
        return "bytes" if self.unit == "byte" else "characters"

    @property
    def layout(self) -> Layout:
        if self.path is not None:
            return Layout({"text": Path(self.path).expanduser().name})
        return LAYOUTS.get(self.name, DEFAULT)

    @property
    def root(self) -> Path:
        if self.path is not None:
            return Path(self.path).expanduser().parent
        return Path(self.data_dir).expanduser() / self.name

    @property
    def file(self) -> Path:
        """The corpus's one text (its training file where each part has a file)."""
        files = self.layout.files
        return self.root / files.get("text", files.get("train", ""))

    @property
    def tokens_dir(self) -> Path:
        """Where token files go: ``cache_dir``, else the user's cache
        (``$XDG_CACHE_HOME/seqmodels/tokens``, ``~/.cache/seqmodels/tokens``), never the data
        folder, which is often shared or read-only."""
        if self.cache_dir is not None:
            return Path(self.cache_dir).expanduser()
        return default_cache_dir()

    def prepare_data(self) -> None:
        """Download (registered corpora) and encode once; under DDP one process per node."""
        if self.path is None and self.name == "text_file":
            raise ConfigError("data=text_file needs data.path=<a text file>")
        if self.path is None:
            root = ensure_dataset(self.name, self.data_dir, download=self.download)
            if self.name in PREPARE:
                PREPARE[self.name](root)
        self.token_files()

    def token_files(self) -> dict[str, TokenFile]:
        """The corpus's files as token files (encoded now where not yet cached)."""
        files = {}
        for key, name in self.layout.files.items():
            path = self.root / name
            if not path.is_file():
                hint = (
                    "set data.path= to a UTF-8 text file (data.unit=byte: any file), or "
                    "SEQMODELS_DATA_DIR (paths.data_dir=) "
                    f"to a folder holding {self.name}/{name}"
                )
                what = "does not exist" if not path.exists() else "is not a file"
                raise DatasetError(f"{path} {what}; {hint}")
            files[key] = path
        if self.unit == "byte":
            return {key: open_bytes(path) for key, path in files.items()}
        if self.vocab is None:
            symbols = set()
            for path in files.values():
                symbols.update(scan_vocab(path, self.tokens_dir))
            self.vocab = Vocab(sorted(symbols), unk=None)
        return {k: encode_file(p, self.vocab.itos, self.tokens_dir) for k, p in files.items()}

    def setup(self, stage: str | None = None) -> None:
        if self.parts:
            return
        files = self.token_files()
        if self.vocab is None:  # bytes
            self.vocab = Vocab(byte_vocab(), unk=None)
        if "text" in files:
            whole = TokenSpan(files["text"])
            sizes = self.layout.sizes if self.path is None else None
            if sizes is not None:
                if len(whole) < sum(sizes):
                    raise DatasetError(
                        f"{self.file} has {len(whole)} {self.symbols}, fewer than the "
                        f"{sum(sizes)} of {self.name}'s canonical split"
                    )
                ends = [sizes[0], sizes[0] + sizes[1], sum(sizes)]
                bounds = zip([0, *ends[:2]], ends)
                self.parts = {p: whole.part(a, b) for p, (a, b) in zip(PARTS, bounds)}
            else:
                split = int(len(whole) * (1 - self.val_fraction))
                held_out = whole.part(split, len(whole))
                self.parts = {"train": whole.part(0, split), "val": held_out, "test": held_out}
        else:
            self.parts = {part: TokenSpan(files[part]) for part in PARTS}
        if self.reverse:  # each part read backwards: the same held-out characters either way
            self.parts = {part: span.reversed() for part, span in self.parts.items()}
        self._check_sizes()

    def _check_sizes(self) -> None:
        shortest = min(len(self.parts["val"]), len(self.parts["test"]))
        if self.eval_window is not None and self.eval_window >= shortest:
            log.warning(
                "data.eval_window=%d is longer than the held-out text (%d characters); "
                "val/loss_windowed uses windows of %d",
                self.eval_window,
                shortest,
                shortest - 1,
            )
            self.eval_window = shortest - 1
        needs = {
            "train": (self.batch_size if self.stateful else 1) * self.block_size,
            "val": max(self.eval_streams, self.block_size),
            "test": max(self.eval_streams, self.block_size),
        }
        for part, span in self.parts.items():
            if len(span) <= needs[part]:
                name = {"val": "validation"}.get(part, part)
                raise DatasetError(
                    f"{self.file}: the {name} part has {len(span)} {self.symbols}, too few for "
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
            windows = Windows(self.parts["train"], self.block_size)
            return split_loader(windows, True, self.batch_size, self.num_workers)
        # Streams are read in order; each item is already a batch. Resumable mid-epoch.
        streams = Streams(self.parts["train"], self.batch_size, self.block_size)
        return ResumableDataLoader(streams, batch_size=None)

    def _eval_loaders(self, part: str) -> list[DataLoader]:
        """``[carried-state streams, independent windows]`` (the second only with eval_window)."""
        span = self.parts[part]
        block = max(self.block_size, self.eval_window or 0)
        world_size = dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1
        if self.eval_streams < world_size:
            raise ConfigError(
                f"data.eval_streams={self.eval_streams} is fewer than the {world_size} processes "
                "that share them; give at least one stream a process"
            )
        streams = Streams(span, self.eval_streams, block, exact=True, shared=True)
        loaders = [DataLoader(streams, batch_size=None)]
        if self.eval_window is not None:
            windows = Windows(span, self.eval_window)
            loaders.append(
                DataLoader(
                    windows,
                    batch_size=self.eval_batch_size,
                    sampler=eval_sampler(windows),
                    num_workers=self.num_workers,
                )
            )
        return loaders

    def val_dataloader(self) -> list[DataLoader]:
        return self._eval_loaders("val")

    def test_dataloader(self) -> list[DataLoader]:
        """The test part (the validation part where the corpus has no separate test text)."""
        return self._eval_loaders("test")
