"""Which split an annotated file feeds, and splits held out from train by a seeded shuffle."""

from __future__ import annotations

import random
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from seqmodels.core.errors import ConfigError, DatasetError
from seqmodels.data.annotated_files import SUFFIXES
from seqmodels.data.slot_files import SPLITS, Utterance

# A file's split by its name before the first dot (train.jsonl, dev.json, ...); others train.
SPLIT_NAMES = {"train": "train", "valid": "valid", "val": "valid", "dev": "valid"}
SPLIT_NAMES |= {"validation": "valid", "test": "test"}
HINT = (
    "data.path= takes a .json/.jsonl file, a folder of them (train.*, valid.* or dev.*, test.*; "
    "other names train) or a list of both: data.path=[a.jsonl,folder]"
)


def paths_of(path: Any) -> list[Path]:
    """``data.path`` as a list of paths (one path, or a list of them)."""
    if path is None or (not isinstance(path, str) and not list(path)):
        raise ConfigError(f"data=annotated needs data.path=<file or folder>; {HINT}")
    items = [path] if isinstance(path, str) else list(path)
    return [Path(str(p)).expanduser() for p in items]


def split_of(file: Path) -> str:
    """The split a file feeds by its name: train, valid or test (any other name: train)."""
    return SPLIT_NAMES.get(file.name.split(".")[0].lower(), "train")


def files_by_split(paths: Sequence[Path]) -> dict[str, list[Path]]:
    """Each split's files: a folder contributes its .json/.jsonl files, a file itself."""
    found: dict[str, list[Path]] = {split: [] for split in SPLITS}
    for path in paths:
        if path.is_dir():
            files = sorted(p for p in path.iterdir() if p.suffix in SUFFIXES and p.is_file())
            if not files:
                raise DatasetError(f"{path} holds no .json or .jsonl file; {HINT}")
        elif path.is_file():
            files = [path]
        else:
            raise DatasetError(f"data.path: {path} does not exist; {HINT}")
        for file in files:
            found[split_of(file)].append(file)
    if not found["train"]:
        raise DatasetError(f"data.path={', '.join(map(str, paths))} gives no training file; {HINT}")
    return found


def held_out(
    train: list[Utterance], fractions: dict[str, float], seed: int, source: str = "the data"
) -> dict[str, list[Utterance]]:
    """``train`` shuffled with ``seed`` and cut: the held-out splits (by fraction) and the rest.

    ``source`` names the data in an error (``data.dataset=my_folder``)."""
    order = list(range(len(train)))
    random.Random(seed).shuffle(order)
    sizes = {split: max(1, round(len(train) * f)) for split, f in fractions.items()}
    if sum(sizes.values()) >= len(train):
        held = " and ".join(f"{n} for {split}" for split, n in sizes.items())
        options = " / ".join(f"data.{split}_fraction" for split in sizes)
        raise DatasetError(
            f"{source}: {len(train)} training examples are too few to hold out {held} "
            f"({options}, at least 1 each); give more examples, or {' and '.join(sizes)} "
            "examples of their own"
        )
    parts, begin = {}, 0
    for split, size in sizes.items():
        parts[split] = [train[i] for i in sorted(order[begin : begin + size])]
        begin += size
    parts["train"] = [train[i] for i in sorted(order[begin:])]
    return parts
