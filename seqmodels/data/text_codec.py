"""Text <-> the symbols a char LM reads, for its unit (char, byte) and direction (reverse).

A byte-level model's vocabulary holds the 256 byte values as the one-character strings
``chr(0)`` ... ``chr(255)`` (Latin-1), so a prompt becomes its UTF-8 bytes and sampled bytes
become text again, invalid sequences shown as U+FFFD. A backward model (``data.reverse``)
reads the text last symbol first: the prompt is reversed before it is read, and the sampled
symbols (the text *before* the prompt) are turned back round.
"""

from __future__ import annotations

import codecs
from collections.abc import Mapping
from typing import Any

from seqmodels.core.errors import ConfigError

UNITS = ("char", "byte")


def check_unit(unit: Any) -> str:
    if unit not in UNITS:
        raise ConfigError(f"data.unit must be one of {', '.join(UNITS)}, got {unit!r}")
    return unit


class TextCodec:
    """``encode``: text -> model symbols in reading order; ``decode``: the way back."""

    def __init__(self, unit: str = "char", reverse: bool = False) -> None:
        self.unit, self.reverse = check_unit(unit), bool(reverse)

    @classmethod
    def of(cls, data_config: Mapping[str, Any] | None) -> TextCodec:
        """The codec of a checkpoint's data config (older checkpoints: characters, forwards)."""
        data_config = data_config or {}
        return cls(data_config.get("unit") or "char", bool(data_config.get("reverse", False)))

    def encode(self, text: str) -> str:
        symbols = text.encode("utf-8").decode("latin-1") if self.unit == "byte" else text
        return symbols[::-1] if self.reverse else symbols

    def decode(self, symbols: str) -> str:
        """Text in reading order for symbols in the model's order (bytes -> UTF-8, U+FFFD)."""
        symbols = symbols[::-1] if self.reverse else symbols
        if self.unit == "byte":
            return symbols.encode("latin-1").decode("utf-8", errors="replace")
        return symbols

    def streaming(self) -> StreamDecoder | None:
        """A decoder for symbols as they are drawn; None for a backward model (its text is
        complete only at the end)."""
        return None if self.reverse else StreamDecoder(self.unit)


class StreamDecoder:
    """Feeds sampled symbols one at a time; returns the text complete so far (a byte that
    starts a multi-byte character waits for the rest)."""

    def __init__(self, unit: str) -> None:
        self.unit = unit
        self.bytes = codecs.getincrementaldecoder("utf-8")(errors="replace")

    def feed(self, symbol: str) -> str:
        if self.unit == "byte":
            return self.bytes.decode(symbol.encode("latin-1"))
        return symbol

    def flush(self) -> str:
        return self.bytes.decode(b"", final=True) if self.unit == "byte" else ""
