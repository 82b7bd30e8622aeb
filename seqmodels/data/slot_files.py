"""Read and validate the ``seq.in`` / ``seq.out`` / ``label`` layout of ATIS and SNIPS."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from seqmodels.data.download import DatasetError
from seqmodels.data.text_files import read_text

SPLITS = ("train", "valid", "test")


@dataclass
class Utterance:
    words: list[str]
    tags: list[str]
    intent: str


def read_lines(path: Path) -> list[str]:
    return read_text(path).splitlines()


def check_bio(tag: str, path: Path, line_no: int) -> None:
    """Accept ``O`` and ``X-type`` for X in B, I (also E, S of IOBES); reject anything else."""
    if tag == "O":
        return
    prefix, sep, kind = tag.partition("-")
    if not sep or prefix not in ("B", "I", "E", "S") or not kind:
        raise DatasetError(
            f"{path}:{line_no}: tag {tag!r} is not BIO (expected 'O', 'B-<type>' or 'I-<type>')"
        )


def read_split(folder: Path, split: str) -> list[Utterance]:
    """Read one split; every line's token counts are checked against each other."""
    split_dir = folder / split
    if not split_dir.is_dir():
        raise DatasetError(
            f"{split_dir} does not exist; expected {split}/seq.in, seq.out and label under "
            f"{folder} (set data.path= or SEQMODELS_DATA_DIR to a folder that holds them)"
        )
    words_path, tags_path, labels_path = (split_dir / n for n in ("seq.in", "seq.out", "label"))
    words, tags, labels = (read_lines(p) for p in (words_path, tags_path, labels_path))
    if not (len(words) == len(tags) == len(labels)):
        raise DatasetError(
            f"{split_dir}: line counts differ: seq.in has {len(words)}, seq.out {len(tags)}, "
            f"label {len(labels)}"
        )
    utterances = []
    for i, (w_line, t_line, label) in enumerate(zip(words, tags, labels), start=1):
        w, t = w_line.split(), t_line.split()
        if not w:
            raise DatasetError(f"{words_path}:{i}: empty utterance")
        if len(w) != len(t):
            raise DatasetError(
                f"{tags_path}:{i}: {len(t)} tags for {len(w)} tokens in {words_path}:{i}"
            )
        for tag in t:
            check_bio(tag, tags_path, i)
        if not label.strip():
            raise DatasetError(f"{labels_path}:{i}: empty intent label")
        utterances.append(Utterance(w, t, label.strip()))
    return utterances
