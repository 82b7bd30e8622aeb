"""Where each char-LM corpus keeps its training, validation and test text.

A corpus is either one text cut into parts (tiny Shakespeare by ``data.val_fraction``; enwik8
and text8 at their canonical offsets) or one file per part (Penn Treebank characters).
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from seqmodels.core.errors import DatasetError

PARTS = ("train", "val", "test")


@dataclass(frozen=True)
class Layout:
    """``files``: ``{"text": name}`` (one text) or a file per part of :data:`PARTS`.

    ``sizes``: the train, validation and test lengths of a one-text corpus in tokens (its
    canonical split); ``None`` cuts the text by ``data.val_fraction`` and tests on validation.
    """

    files: dict[str, str]
    sizes: tuple[int, int, int] | None = None


def prepare_ptb_char(root: Path) -> None:
    """Mikolov's ``ptb.char.*.txt`` as plain text: one symbol a character, a line a sentence.

    The files write each symbol followed by a space (``_`` marks a word boundary); the papers
    model the symbols with an end-of-sentence token after each line (AWD-LSTM's reader), so
    the spaces are dropped and ``\\n`` is that token.
    """
    for split, part in (("train", "train"), ("valid", "val"), ("test", "test")):
        out = root / f"{part}.txt"
        if out.is_file():
            continue
        source = root / f"ptb.char.{split}.txt"
        lines = [line.split() for line in source.read_text(encoding="utf-8").split("\n")]
        long = sorted({symbol for line in lines for symbol in line if len(symbol) > 1})
        if long:
            raise DatasetError(f"{source}: symbols longer than one character: {long[:5]}")
        text = "".join("".join(line) + "\n" for line in lines if line)
        fd, tmp = tempfile.mkstemp(prefix=f".{out.name}.", suffix=".part", dir=root)
        try:
            with os.fdopen(fd, "w", encoding="utf-8", newline="") as f:
                f.write(text)
            os.replace(tmp, out)
        finally:
            Path(tmp).unlink(missing_ok=True)


LAYOUTS: dict[str, Layout] = {
    "tinyshakespeare": Layout({"text": "input.txt"}),
    "enwik8": Layout({"text": "enwik8"}, (90_000_000, 5_000_000, 5_000_000)),
    "text8": Layout({"text": "text8"}, (90_000_000, 5_000_000, 5_000_000)),
    "ptb_char": Layout({"train": "train.txt", "val": "val.txt", "test": "test.txt"}),
}
PREPARE: dict[str, Callable[[Path], None]] = {"ptb_char": prepare_ptb_char}
DEFAULT = Layout({"text": "input.txt"})  # any other registered dataset: one input.txt
