"""Pretrained word vectors (GloVe, word2vec, fastText) read for one vocabulary, streamed.

Formats, told apart by their first bytes (the file name does not matter):

- text, one ``word v1 v2 ... vd`` line per word (GloVe ``.txt``); an optional first line
  ``<count> <dim>`` (word2vec text, fastText ``.vec``);
- word2vec binary (``<count> <dim>\\n`` then per word ``word `` and ``dim`` little-endian
  float32 values);
- either one gzip-compressed (``.gz``).

The file is read line by line and only the wanted words' rows are kept, so a multi-GB file
never sits in memory. A malformed line is one error naming the file and line number. Words are
matched exactly first; with ``lowercase=True`` a word without a vector takes the vector of its
lower-cased form (GloVe's common-crawl files are cased, the 6B ones lower-cased).
"""

from __future__ import annotations

import gzip
import logging
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import torch

from seqmodels.core.errors import DatasetError

log = logging.getLogger(__name__)

GZIP_MAGIC = b"\x1f\x8b"


@dataclass
class WordVectors:
    """The rows found for the wanted words: ``vectors[word]`` is a ``[dim]`` float tensor."""

    path: str
    dim: int
    vectors: dict[str, torch.Tensor]

    def lookup(self, word: str, lowercase: bool = True) -> torch.Tensor | None:
        """The word's vector, or its lower-cased form's (``lowercase``), or ``None``."""
        found = self.vectors.get(word)
        if found is None and lowercase:
            found = self.vectors.get(word.lower())
        return found


def _open(path: Path) -> IO[bytes]:
    with open(path, "rb") as probe:
        magic = probe.read(2)
    return gzip.open(path, "rb") if magic == GZIP_MAGIC else open(path, "rb")


def _header(line: bytes) -> tuple[int, int] | None:
    """``(count, dim)`` when ``line`` is a word2vec/fastText header line, else ``None``."""
    fields = line.split()
    if len(fields) == 2 and all(f.isdigit() for f in fields):
        return int(fields[0]), int(fields[1])
    return None


def _split(path: Path, line_no: int, line: bytes, dim: int | None) -> tuple[str, list[str]]:
    """One text line -> word and its ``dim`` value fields; errors name the file and line."""
    try:
        text = line.decode("utf-8")
    except UnicodeDecodeError as err:
        raise DatasetError(f"{path}:{line_no}: not UTF-8 text ({err.reason})") from err
    # GloVe words may hold spaces (the 840B file has a few): the last ``dim`` fields are values.
    fields = text.rstrip("\r\n").rstrip(" ").split(" ")
    width = dim if dim is not None else len(fields) - 1
    if width < 1 or len(fields) < width + 1:
        expected = f"a word and {dim} numbers" if dim is not None else "a word and its numbers"
        raise DatasetError(
            f"{path}:{line_no}: {len(fields)} fields, expected {expected} separated by spaces"
        )
    return " ".join(fields[: len(fields) - width]), fields[len(fields) - width :]


def _numbers(path: Path, line_no: int, word: str, fields: list[str]) -> list[float]:
    try:
        return [float(v) for v in fields]
    except ValueError as err:
        raise DatasetError(f"{path}:{line_no}: {err} (in the vector of {word!r})") from err


def _text_rows(
    path: Path, f: IO[bytes], first: bytes, keep: set[str]
) -> Iterator[tuple[str, list[float], int]]:
    """``(word, values, dim)`` for the kept words of a text file whose first line is
    ``first``; every line's shape is checked, only kept words' numbers are parsed (speed)."""
    header = _header(first)
    dim = header[1] if header else None
    if header is None:  # GloVe: the first line is a vector already
        word, fields = _split(path, 1, first, None)
        dim = len(fields)
        values = _numbers(path, 1, word, fields)
        yield word, values, dim
    for line_no, line in enumerate(f, start=2):
        if not line.strip():
            continue
        word, fields = _split(path, line_no, line, dim)
        if word in keep:
            yield word, _numbers(path, line_no, word, fields), dim


def _binary_rows(
    path: Path, f: IO[bytes], count: int, dim: int
) -> Iterator[tuple[str, torch.Tensor, int]]:
    """word2vec binary: ``word<space>`` then ``dim`` float32 values, per word."""
    size = 4 * dim
    for index in range(count):
        word = bytearray()
        while (byte := f.read(1)) != b" ":
            if not byte:
                raise DatasetError(
                    f"{path}: ends inside word {index + 1} of {count} (word2vec binary)"
                )
            if byte != b"\n":  # some writers end each vector with a newline
                word += byte
        raw = f.read(size)
        if len(raw) != size:
            raise DatasetError(f"{path}: ends inside the vector of word {index + 1} of {count}")
        values = torch.frombuffer(bytearray(raw), dtype=torch.float32)
        yield word.decode("utf-8", errors="replace"), values, dim


def _is_text_row(line: bytes, dim: int) -> bool:
    """Is ``line`` (the row after a header) a text row: a word and ``dim`` numbers?"""
    try:
        fields = line.decode("utf-8").split()
        [float(v) for v in fields[-dim:]]
    except (UnicodeDecodeError, ValueError):
        return False
    return len(fields) > dim


def read_word_vectors(
    path: str | Path, wanted: Iterable[str], lowercase: bool = True
) -> WordVectors:
    """The vectors of the ``wanted`` words (and, with ``lowercase``, of their lower-cased
    forms) in the file at ``path``; every other row is read and dropped (its numbers are
    not even parsed, so a malformed number there goes unnoticed)."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise DatasetError(
            f"model.word_vectors.path={path} does not exist (a GloVe/word2vec/fastText file)"
        )
    log.info(
        "reading word vectors from %s (%.0f MB), keeping the data's words",
        path,
        path.stat().st_size / 1e6,
    )
    keep = set(wanted)
    if lowercase:
        keep |= {w.lower() for w in keep}
    vectors: dict[str, torch.Tensor] = {}
    dim = 0
    with _open(path) as f:
        first = f.readline()
        header = _header(first)
        binary = header is not None and not _is_text_row(f.readline(), header[1])
    if not first.strip():
        raise DatasetError(f"{path}:1: empty; expected a vector or a '<count> <dim>' header")
    with _open(path) as f:  # again from the start, now that the format is known
        first = f.readline()
        if binary:
            rows: Iterator = _binary_rows(path, f, *header)
        else:
            rows = _text_rows(path, f, first, keep)
        for word, values, dim in rows:  # noqa: B007 (dim: the file's, read after the loop)
            if word in keep and word not in vectors:  # the first row of a word wins
                vectors[word] = torch.as_tensor(values, dtype=torch.float32).clone()
    if not dim:
        raise DatasetError(f"{path} holds no vectors")
    return WordVectors(str(path), dim, vectors)


def coverage(words: Iterable[str], found: WordVectors, lowercase: bool = True) -> dict:
    """The share (percent) of ``words`` (tokens, with repeats) and of distinct types that have
    a vector."""
    tokens = list(words)
    types = set(tokens)
    hit_types = {w for w in types if found.lookup(w, lowercase) is not None}
    hit_tokens = sum(1 for w in tokens if w in hit_types)
    return {
        "tokens": 100.0 * hit_tokens / max(len(tokens), 1),
        "types": 100.0 * len(hit_types) / max(len(types), 1),
    }


# The last file read and for which words: the DataModule reads the file for every word of
# the data, the tagger then asks for its vocabulary's (a subset), so one pass serves both.
_last: dict[str, tuple[frozenset[str], bool, float, WordVectors]] = {}


def vectors_for(path: str | Path, words: Iterable[str], lowercase: bool = True) -> WordVectors:
    """:func:`read_word_vectors`, reusing the last read of the same unchanged file when it
    covered these words."""
    path = Path(path).expanduser()
    wanted = frozenset(words)
    mtime = path.stat().st_mtime if path.is_file() else -1.0
    cached = _last.get(str(path))
    if cached and cached[1] == lowercase and cached[2] == mtime and wanted <= cached[0]:
        return cached[3]
    found = read_word_vectors(path, wanted, lowercase)
    _last.clear()
    _last[str(path)] = (wanted, lowercase, mtime, found)
    return found
