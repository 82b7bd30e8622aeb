"""A text encoded once to a binary file of token ids, then read a slice at a time.

The first use of a text scans its vocabulary and writes its ids (``uint8`` when the vocabulary
has at most 256 symbols, else ``uint16``/``uint32``) to
``<cache_dir>/<stem>-<key>-<content>.<dtype>``, via a temporary file renamed when complete. The
key covers the text's path, the unit and the vocabulary; ``content`` is the size and a hash of
the text's bytes (:func:`fingerprint`), so touching a text keeps its file and an edited text is
written to a new one. Texts up to 64 MiB are hashed whole: an edit is seen even when it kept
the size and modification time (``rsync -a``, ``cp -p``, ``tar``). Larger texts are hashed by
16 sampled blocks of 1 MiB: an edit that keeps the size, touches no sampled block and restores
the modification time goes unseen, and the old ids are read (delete the token files to have it
encoded again), the price of not reading a 5 GB corpus whole at every start (docs/corpora.md).
A token file is never replaced in place; once a new content's file is written, the older ones
are removed: a run still reading one keeps its open memory map (Linux), but a DataLoader worker
started later reopens it by name and fails. Both passes read the text in chunks with vectorised
numpy code; nothing proportional to the text stays in memory.

``unit="byte"`` needs no encoding at all: the 256 byte values are the vocabulary and the text
file itself is the token file (any file, UTF-8 or not).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from seqmodels.core.errors import DatasetError
from seqmodels.data.text_codec import UNITS, check_unit
from seqmodels.data.token_cache import (
    default_cache_dir,
    digest,
    fingerprint,
    prune_older,
    read_json,
    write_atomically,
)

__all__ = [
    "UNITS",
    "TokenFile",
    "TokenSpan",
    "check_unit",
    "default_cache_dir",
    "encode_file",
    "fingerprint",
    "open_bytes",
]
CHUNK = 1 << 23  # bytes of text per step (8 MiB: the arrays of a step stay small)
PROGRESS_FROM = 1 << 26  # show a progress bar for texts of 64 MiB and more
MAX_CODEPOINT = 0x110000


def byte_vocab() -> list[str]:
    """The byte vocabulary as plain strings: byte ``b`` is the symbol ``chr(b)`` (Latin-1)."""
    return [chr(b) for b in range(256)]


def dtype_for(vocab_size: int) -> np.dtype:
    """The smallest unsigned integer type that holds every id of the vocabulary."""
    for dtype in (np.uint8, np.uint16, np.uint32):
        if vocab_size <= np.iinfo(dtype).max + 1:
            return np.dtype(dtype)
    raise DatasetError(f"a vocabulary of {vocab_size} symbols is too large")


@dataclass
class TokenFile:
    """Ids on disk (``path``, ``dtype``, ``count`` ids) and the vocabulary they index."""

    path: Path
    dtype: np.dtype
    count: int
    vocab: list[str]

    def array(self) -> np.ndarray:
        """All ids as a read-only memory map (inspection; training reads through TokenSpan)."""
        if self.count == 0:
            return np.zeros(0, self.dtype)
        return np.memmap(self.path, dtype=self.dtype, mode="r", shape=(self.count,))


def _chunks(path: Path, desc: str, whole_chars: bool) -> Iterator[tuple[int, bytes]]:
    """``(byte offset, chunk)`` over the file; ``whole_chars`` cuts only between UTF-8 chars."""
    size = path.stat().st_size
    bar = tqdm(
        total=size,
        unit="B",
        unit_scale=True,
        desc=desc,
        disable=True if size < PROGRESS_FROM else None,
    )
    offset, carry = 0, b""
    with open(path, "rb") as f, bar:
        while block := f.read(CHUNK):
            bar.update(len(block))
            chunk, carry = carry + block, b""
            if whole_chars and len(block) == CHUNK:
                cut = len(chunk)  # back up over continuation bytes (10xxxxxx) to a lead byte
                while cut > max(0, len(chunk) - 4) and chunk[cut - 1] & 0xC0 == 0x80:
                    cut -= 1
                if cut > 0 and chunk[cut - 1] >= 0xC0:  # a lead byte whose char is cut off
                    cut -= 1
                chunk, carry = chunk[:cut], chunk[cut:]
            yield offset, chunk
            offset += len(chunk)
        if carry:
            yield offset, carry


def _pieces(chunk: bytes, size: int = 1 << 16) -> Iterator[tuple[int, bytes]]:
    """``(offset, piece)`` of about ``size`` bytes, cut between characters.

    Most text is ASCII with a few other characters: small pieces let the ASCII ones take the
    fast path (``bytes.translate``) and only the others the numpy decoder.
    """
    start, end = 0, len(chunk)
    while start < end:
        stop = min(start + size, end)
        while stop < end and chunk[stop] & 0xC0 == 0x80:  # a continuation byte: same character
            stop += 1
        yield start, chunk[start:stop]
        start = stop


def _codepoints(chunk: bytes, path: Path, offset: int) -> np.ndarray:
    """The chunk's characters as code points (its bytes as they are when it is all ASCII).

    Python's UTF-8 decoder checks and decodes, and encoding the ``str`` as UTF-32 gives the code
    points as one array: 0.6-1 GB/s on Chinese, Greek or mixed text, about 8x numpy's
    byte-by-byte decoding.
    """
    if chunk.isascii():
        return np.frombuffer(chunk, dtype=np.uint8)
    try:
        text = chunk.decode("utf-8")
    except UnicodeDecodeError as err:
        raise DatasetError(
            f"{path} is not UTF-8 text: invalid byte 0x{chunk[err.start]:02x} at byte offset "
            f"{offset + err.start}; data.unit=byte reads any file"
        ) from err
    return np.frombuffer(text.encode("utf-32-le"), dtype="<u4")


def scan_vocab(path: Path, cache_dir: Path) -> list[str]:
    """Every character of the UTF-8 text at ``path``, sorted by code point (cached)."""
    cached = cache_dir / f"{path.stem}-{digest(str(path.resolve()), 'char')}.vocab.json"
    stamp = fingerprint(path)
    saved = read_json(cached)
    if saved and saved.get("stamp") == stamp:
        return list(saved["vocab"])
    if stamp["size"] == 0:
        raise DatasetError(f"{path} is empty")
    seen = np.zeros(MAX_CODEPOINT, dtype=bool)
    known = b""  # the ASCII characters seen so far
    for offset, chunk in _chunks(path, f"vocabulary of {path.name}", whole_chars=True):
        for at, piece in _pieces(chunk):
            if piece.isascii():  # bytes.translate runs at memory speed; most pieces add nothing
                if new := piece.translate(None, known):
                    seen[np.frombuffer(new, dtype=np.uint8)] = True
                    known = np.flatnonzero(seen[:128]).astype(np.uint8).tobytes()
            else:
                seen[_codepoints(piece, path, offset + at)] = True
    vocab = [chr(c) for c in np.flatnonzero(seen).tolist()]
    if all(ch.isspace() for ch in vocab):
        raise DatasetError(f"{path} is only whitespace ({stamp['size']} bytes)")
    text = json.dumps({"stamp": stamp, "vocab": vocab}, ensure_ascii=True).encode()
    write_atomically(cached, lambda f: f.write(text))
    return vocab


def encode_file(path: Path, vocab: Sequence[str], cache_dir: Path) -> TokenFile:
    """The ids of the text at ``path`` under ``vocab``, encoded now unless already cached."""
    vocab = list(vocab)
    dtype = dtype_for(len(vocab))
    stamp = fingerprint(path)
    key = digest(str(path.resolve()), "char", vocab)
    # The content's own name (size and hash; not the modification time, so a touched text
    # keeps its file): a changed text gets a new file, never written over the old one.
    content = digest(stamp["size"], stamp["blake2b"])[:12]
    tokens = cache_dir / f"{path.stem}-{key}-{content}.{dtype.name}"
    if tokens.is_file():  # complete: it only appears by a rename
        return TokenFile(tokens, dtype, tokens.stat().st_size // dtype.itemsize, vocab)

    codes = np.array([ord(ch) for ch in vocab], dtype=np.int64)
    lut = np.full(MAX_CODEPOINT, -1, dtype=np.int32)  # code point -> id (-1: not in vocab)
    lut[codes] = np.arange(len(vocab), dtype=np.int32)
    count = 0

    # ASCII text into byte ids: bytes.translate maps a chunk at memory speed.
    ascii_ids = bytes(max(int(i), 0) for i in lut[:256]) if dtype == np.uint8 else None
    ascii_known = bytes(c for c in range(128) if lut[c] >= 0)

    def write(f) -> None:
        nonlocal count
        for offset, chunk in _chunks(path, f"encoding {path.name}", whole_chars=True):
            out = []
            for at, piece in _pieces(chunk):
                if ascii_ids is not None and piece.isascii():
                    if piece.translate(None, ascii_known):
                        _unknown_error(path, np.frombuffer(piece, dtype=np.uint8), lut, count)
                    out.append(piece.translate(ascii_ids))
                else:
                    cps = _codepoints(piece, path, offset + at)
                    ids = lut[cps]
                    if ids.min() < 0:
                        _unknown_error(path, cps, lut, count)
                    out.append(ids.astype(dtype).tobytes())
                count += len(out[-1]) // dtype.itemsize
            f.write(b"".join(out))
        if fingerprint(path) != stamp:  # edited while read: these ids are not of that content
            raise DatasetError(f"{path} changed while it was being encoded; start again")

    write_atomically(tokens, write)
    meta_text = json.dumps({"source": str(path.resolve()), "stamp": stamp, "count": count}).encode()
    write_atomically(tokens.with_name(tokens.name + ".json"), lambda f: f.write(meta_text))
    prune_older(tokens, f"{path.stem}-{key}-")  # the text's older contents
    return TokenFile(tokens, dtype, count, vocab)


def _unknown_error(path: Path, cps: np.ndarray, lut: np.ndarray, before: int) -> None:
    unknown = lut[cps] < 0
    chars = sorted({chr(c) for c in np.unique(cps[unknown]).tolist()})
    raise DatasetError(
        f"{path} has characters outside the vocabulary: {chars[:20]} (the first at character "
        f"{before + int(np.argmax(unknown))})"
    )


def open_bytes(path: Path) -> TokenFile:
    """Any file as byte tokens: the file is its own token file."""
    size = path.stat().st_size
    if size == 0:
        raise DatasetError(f"{path} is empty")
    return TokenFile(path.resolve(), np.dtype(np.uint8), size, byte_vocab())


class TokenSpan:
    """Tokens ``[start, stop)`` of a token file, read forwards or (``reverse``) backwards.

    Each read copies just the ids it needs from the file (``os.pread``): the corpus is never
    mapped, so the process's memory (RSS) stays flat however much of it an epoch has read, and
    the operating system's page cache, shared by all processes, does the caching. A span over
    an in-memory array (a tensor: tests, small texts) reads that instead. Pickling (DataLoader
    workers) carries the file's name, not its ids.
    """

    def __init__(
        self,
        source: TokenFile | np.ndarray,
        start: int = 0,
        stop: int | None = None,
        reverse: bool = False,
    ) -> None:
        self.source = source
        total = source.count if isinstance(source, TokenFile) else len(source)
        self.start, self.stop = start, total if stop is None else stop
        self.reverse = reverse
        self._fd: int | None = None

    @classmethod
    def of(cls, ids: TokenSpan | torch.Tensor | np.ndarray | Sequence[int]) -> TokenSpan:
        """``ids`` as a span (a tensor or list stays in memory: tests, small texts)."""
        if isinstance(ids, TokenSpan):
            return ids
        if isinstance(ids, torch.Tensor):
            return cls(ids.detach().cpu().numpy())
        return cls(np.asarray(ids))

    def __len__(self) -> int:
        return self.stop - self.start

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_fd": None}  # reopened in the worker

    def __del__(self) -> None:
        if getattr(self, "_fd", None) is not None:
            os.close(self._fd)

    def part(self, begin: int, end: int) -> TokenSpan:
        """Tokens ``[begin, end)`` of this span, in its reading order."""
        if self.reverse:
            return TokenSpan(self.source, self.stop - end, self.stop - begin, reverse=True)
        return TokenSpan(self.source, self.start + begin, self.start + end)

    def reversed(self) -> TokenSpan:
        return TokenSpan(self.source, self.start, self.stop, reverse=not self.reverse)

    def _physical(self, begin: int, end: int) -> np.ndarray:
        """Ids at file positions ``[begin, end)``."""
        if not isinstance(self.source, TokenFile):
            return self.source[begin:end]
        if self._fd is None:
            self._fd = os.open(self.source.path, os.O_RDONLY)
        size = self.source.dtype.itemsize
        raw = os.pread(self._fd, (end - begin) * size, begin * size)
        return np.frombuffer(raw, dtype=self.source.dtype)

    def _ids(self, begin: int, end: int) -> np.ndarray:
        """Ids ``[begin, end)`` in reading order, cut to the span."""
        begin, end = max(begin, 0), min(end, len(self))
        if end <= begin:
            return np.zeros(0, dtype=np.int64)
        if self.reverse:
            return self._physical(self.stop - end, self.stop - begin)[::-1]
        return self._physical(self.start + begin, self.start + end)

    def read(self, begin: int, end: int) -> torch.Tensor:
        """Ids ``[begin, end)`` in reading order (ends past the span are cut), as int64."""
        return torch.from_numpy(self._ids(begin, end).astype(np.int64))

    def rows(self, starts: Sequence[int], length: int) -> torch.Tensor:
        """``[len(starts), length]``: ids ``[s, s + length)`` for each start, 0 past the end."""
        out = np.zeros((len(starts), length), dtype=np.int64)
        for row, begin in enumerate(starts):
            piece = self._ids(int(begin), int(begin) + length)
            out[row, : len(piece)] = piece
        return torch.from_numpy(out)
