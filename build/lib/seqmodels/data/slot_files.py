"""Read and validate the ``seq.in`` / ``seq.out`` / ``label`` layout of ATIS and SNIPS."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from seqmodels.data.download import DatasetError
from seqmodels.data.text_files import read_lines

SPLITS = ("train", "valid", "test")
FILES = ("seq.in", "seq.out", "label")
LAYOUT = (
    "a slot-filling folder holds train/, valid/ and test/, each with seq.in (words), seq.out "
    "(one BIO tag per word) and label (one intent per line); point data.path= at such a "
    "folder, or SEQMODELS_DATA_DIR (paths.data_dir=) at a folder holding atis/ and snips/"
)


@dataclass
class Utterance:
    words: list[str]
    tags: list[str]
    intent: str


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
    if not folder.is_dir():
        raise DatasetError(f"{folder} does not exist or is not a folder; {LAYOUT}")
    split_dir = folder / split
    if not split_dir.is_dir():
        raise DatasetError(f"{split_dir} does not exist; {LAYOUT}")
    words_path, tags_path, labels_path = (split_dir / n for n in FILES)
    words, tags, labels = (read_lines(p, LAYOUT) for p in (words_path, tags_path, labels_path))
    for path, lines in ((tags_path, tags), (labels_path, labels)):
        if len(lines) != len(words):
            problem = "missing" if len(lines) < len(words) else "extra line"
            raise DatasetError(
                f"{path}:{min(len(lines), len(words)) + 1}: {problem}: {path.name} has "
                f"{len(lines)} lines, {words_path} has {len(words)} (one line per utterance)"
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
