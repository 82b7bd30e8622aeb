"""Read UTF-8 text with errors that name the file and the byte offset."""

from __future__ import annotations

from pathlib import Path

from seqmodels.data.download import DatasetError


def read_text(path: str | Path) -> str:
    """The whole file as text; refuses a missing, non-UTF-8 or empty (whitespace-only) file."""
    path = Path(path).expanduser()
    if not path.exists():
        raise DatasetError(f"{path} does not exist")
    if not path.is_file():
        raise DatasetError(f"{path} is not a file")
    raw = path.read_bytes()
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as err:
        raise DatasetError(
            f"{path} is not UTF-8 text: invalid byte 0x{raw[err.start]:02x} at byte offset "
            f"{err.start}"
        ) from err
    if not text.strip():
        raise DatasetError(f"{path} is empty")
    return text
