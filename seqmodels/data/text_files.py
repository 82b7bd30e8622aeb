"""Read UTF-8 text with errors that name the file and the byte offset."""

from __future__ import annotations

from pathlib import Path

from seqmodels.data.download import DatasetError


def read_text(path: str | Path, hint: str = "") -> str:
    """The whole file as text; refuses a missing, non-UTF-8 or empty (whitespace-only) file.

    A UTF-8 byte order mark (which Windows tools write) is dropped, as ``utf-8-sig`` reads it.

    ``hint`` (how to provide the file) is added to the message when the file is missing.
    """
    path = Path(path).expanduser()
    if not path.exists():
        raise DatasetError(f"{path} does not exist" + (f"; {hint}" if hint else ""))
    if not path.is_file():
        raise DatasetError(f"{path} is not a file" + (f"; {hint}" if hint else ""))
    raw = path.read_bytes()
    try:
        text = raw.decode("utf-8").removeprefix("\ufeff")
    except UnicodeDecodeError as err:
        raise DatasetError(
            f"{path} is not UTF-8 text: invalid byte 0x{raw[err.start]:02x} at byte offset "
            f"{err.start}"
        ) from err
    if not text.strip():
        what = "empty" if not raw else f"only whitespace ({len(raw)} bytes)"
        raise DatasetError(f"{path} is {what}")
    return text


def read_lines(path: str | Path, hint: str = "") -> list[str]:
    """The file's lines, split at newlines only, with ``\\r\\n`` endings taken as ``\\n``.

    (``str.splitlines`` also splits at U+2028, U+0085 and other characters a token may hold,
    which would shift line numbers against ``seq.out`` and ``label``.)
    """
    lines = read_text(path, hint).split("\n")
    if lines[-1] == "":
        lines.pop()
    return [line.removesuffix("\r") for line in lines]
