"""Convert a tagged data set between CoNLL, the ATIS layout and annotated JSONL.

``python -m seqmodels.data.convert <input> <output> --to conll|atis|jsonl``

The input's format is found from it: a folder with ``train/seq.in`` is the ATIS/SNIPS layout,
a folder or file of ``.json``/``.jsonl`` is annotated text (:mod:`seqmodels.data.annotated_files`),
anything else CoNLL columns. A folder converts split by split (``train``, ``valid``/``dev``,
``test`` by file name) into a folder: ``train.txt``, ... (conll, what ``data=conll`` reads),
``train/seq.in``, ... (atis), ``train.jsonl``, ... (jsonl). A single file converts into one file
(atis: one folder with ``seq.in``, ``seq.out``, ``label``). JSONL written here lists each
example's tokens, so it reads back to the same tokens and tags; IOBES tags come back as BIO.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

from seqmodels.core.errors import DatasetError, UserError
from seqmodels.data.annotated_files import SUFFIXES, read_annotated, record_of
from seqmodels.data.conll_files import NO_LABEL, read_conll
from seqmodels.data.slot_files import SPLITS, Utterance, read_split
from seqmodels.data.splits import files_by_split, split_of

FORMATS = ("conll", "atis", "jsonl")
CONLL_SUFFIXES = (".txt", ".conll", ".bio", ".iob", ".tsv")
SINGLE = ""  # the part name of a single-file input


def detect(path: Path) -> str:
    """``atis``, ``annotated`` or ``conll``: what ``path`` holds."""
    if not path.exists():
        raise DatasetError(f"{path} does not exist")
    if path.is_dir():
        if (path / "train" / "seq.in").is_file():
            return "atis"
        if any(p.suffix in SUFFIXES for p in path.iterdir()):
            return "annotated"
        return "conll"
    return "annotated" if path.suffix in SUFFIXES else "conll"


def conll_files(folder: Path) -> dict[str, list[Path]]:
    """A CoNLL folder's files by split (their names before the first dot)."""
    found: dict[str, list[Path]] = {split: [] for split in SPLITS}
    for path in sorted(folder.iterdir()):
        if path.is_file() and path.suffix in CONLL_SUFFIXES:
            found[split_of(path)].append(path)
    if not any(found.values()):
        raise DatasetError(f"{folder} holds no CoNLL file ({', '.join(CONLL_SUFFIXES)})")
    return found


def read_set(path: str | Path, scheme: str = "BIO") -> dict[str, list[Utterance]]:
    """Every part of a data set: ``{split: utterances}`` for a folder, ``{"": ...}`` for a file."""
    path = Path(path).expanduser()
    kind = detect(path)
    if kind == "atis":
        return {s: read_split(path, s) for s in SPLITS if (path / s / "seq.in").is_file()}
    if not path.is_dir():
        if kind == "annotated":
            return {SINGLE: read_annotated(path)[0]}
        return {SINGLE: read_conll(path, scheme)}
    files = files_by_split([path]) if kind == "annotated" else conll_files(path)
    parts: dict[str, list[Utterance]] = {}
    for split, paths in files.items():
        for file in paths:
            read = read_annotated(file)[0] if kind == "annotated" else read_conll(file, scheme)
            parts.setdefault(split, []).extend(read)
    return parts


def write_conll(path: Path, utterances: Sequence[Utterance]) -> None:
    """``word tag`` lines, a ``# label = <intent>`` line before a labelled sentence, a blank
    line after each (what ``data=conll`` reads)."""
    with open(path, "w", encoding="utf-8") as f:
        for u in utterances:
            if u.intent != NO_LABEL:
                f.write(f"# label = {u.intent}\n")
            f.writelines(f"{w} {t}\n" for w, t in zip(u.words, u.tags))
            f.write("\n")


def write_atis(folder: Path, utterances: Sequence[Utterance]) -> None:
    """``seq.in`` (words), ``seq.out`` (tags) and ``label`` (intents), one line per utterance."""
    folder.mkdir(parents=True, exist_ok=True)
    columns = {
        "seq.in": (" ".join(u.words) for u in utterances),
        "seq.out": (" ".join(u.tags) for u in utterances),
        "label": (u.intent for u in utterances),
    }
    for name, lines in columns.items():
        (folder / name).write_text("".join(f"{line}\n" for line in lines), encoding="utf-8")


def write_jsonl(path: Path, utterances: Sequence[Utterance]) -> None:
    """One annotated example per line (:func:`seqmodels.data.annotated_files.record_of`)."""
    with open(path, "w", encoding="utf-8") as f:
        for u in utterances:
            f.write(json.dumps(record_of(u), ensure_ascii=False) + "\n")


def write_set(parts: dict[str, list[Utterance]], output: str | Path, to: str) -> list[Path]:
    """Write ``parts`` (from :func:`read_set`) as ``to``; returns the paths written."""
    if to not in FORMATS:
        raise DatasetError(f"--to must be one of {', '.join(FORMATS)}, got {to!r}")
    output = Path(output).expanduser()
    written = []
    for part, utterances in parts.items():
        if part == SINGLE:
            target = output
        elif to == "atis":
            target = output / part
        else:
            target = output / f"{part}.{'txt' if to == 'conll' else 'jsonl'}"
        if to != "atis":
            target.parent.mkdir(parents=True, exist_ok=True)
        {"conll": write_conll, "atis": write_atis, "jsonl": write_jsonl}[to](target, utterances)
        written.append(target)
    return written


def main(argv: Sequence[str] | None = None) -> None:
    """``python -m seqmodels.data.convert <input> <output> --to conll|atis|jsonl``."""
    parser = argparse.ArgumentParser(
        prog="python -m seqmodels.data.convert",
        description="Convert a tagged data set (CoNLL, the ATIS layout, annotated JSON/JSONL).",
    )
    parser.add_argument("input", help="a file or folder (its format is found from it)")
    parser.add_argument("output", help="the file or folder to write")
    parser.add_argument("--to", required=True, choices=FORMATS, help="the output format")
    parser.add_argument("--scheme", default="BIO", help="CoNLL input's tags: BIO, IOB1, IOBES")
    args = parser.parse_args(argv)
    try:
        parts = read_set(args.input, args.scheme)
        written = write_set(parts, args.output, args.to)
    except UserError as err:
        print(f"error: {err}", file=sys.stderr)
        raise SystemExit(1) from None
    for (part, utterances), path in zip(parts.items(), written):
        print(f"wrote {len(utterances)} {part + ' ' if part else ''}utterances to {path}")


if __name__ == "__main__":
    main()
