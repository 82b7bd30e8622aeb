"""Read the CoNLL column format (CoNLL-2000/2003 style) into tagged sentences.

One token per line, columns separated by spaces or tabs, a blank line between sentences;
``-DOCSTART-`` lines are skipped. The token is column 0, the tag the last column (or
``tag_column``). A comment line ``# <label_key> = <value>`` before a sentence gives it a
sentence-level label (as an intent); other ``# key = value`` lines are skipped. Tag schemes:

- ``BIO`` / ``IOB2``: ``B-x`` starts every chunk; read as is. A file whose chunks open with
  ``I-x`` (IOB1, as the original CoNLL-2003 files) is read as conlleval reads it, each such
  ``I-x`` as ``B-x``, with one warning naming the file and the first such line: the CRF would
  otherwise learn chunk starts its decoder never emits.
- ``IOB1``: ``B-x`` only between two adjacent chunks of one type; converted to IOB2 on read
  (an ``I-x`` that starts a chunk becomes ``B-x``), so chunks, CRF constraints and span F1
  are those of IOB2.
- ``IOBES`` / ``BIOES``: ``B``/``I``/``E``/``S`` prefixes; read as is (seqeval's chunking and
  the CRF's IOBES constraints follow ``E-x``/``S-x``).

Errors name the file and line: a line with a different number of columns than the file's
first token line, or a tag that is not of the scheme.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path

from seqmodels.core.errors import DatasetError
from seqmodels.data.slot_files import Utterance
from seqmodels.data.text_files import read_lines

SCHEMES = {"BIO": "BI", "IOB2": "BI", "IOB1": "BI", "IOBES": "BIES", "BIOES": "BIES"}
NO_LABEL = "-"  # the sentence label when the data has none
COMMENT = re.compile(r"^#\s*(\w+)\s*=\s*(.*)$")

log = logging.getLogger(__name__)


def check_tag(tag: str, scheme: str, path: Path, line_no: int) -> None:
    prefixes = SCHEMES[scheme]
    prefix, sep, kind = tag.partition("-")
    if tag != "O" and not (sep and kind and len(prefix) == 1 and prefix in prefixes):
        expected = ", ".join(f"'{p}-<type>'" for p in prefixes)
        raise DatasetError(
            f"{path}:{line_no}: tag {tag!r} is not {scheme} (expected 'O', {expected}); "
            "set data.scheme= (BIO, IOB1, IOBES) or data.tag_column= if this is another column"
        )


def iob1_to_iob2(tags: list[str]) -> list[str]:
    """``I-x`` that opens a chunk (at the start, after ``O`` or another type) -> ``B-x``."""
    out = []
    for i, tag in enumerate(tags):
        prev = out[i - 1] if i else "O"
        if tag.startswith("I-") and (prev == "O" or prev[2:] != tag[2:]):
            tag = "B-" + tag[2:]
        out.append(tag)
    return out


def read_conll(
    path: str | Path,
    scheme: str = "BIO",
    tag_column: int = -1,
    label_key: str | None = "label",
) -> list[Utterance]:
    """Sentences of one CoNLL file (IOB1 converted to IOB2); each with its label or ``-``."""
    path = Path(path).expanduser()
    scheme = scheme.upper()
    if scheme not in SCHEMES:
        raise DatasetError(f"data.scheme must be one of {', '.join(SCHEMES)}, got {scheme!r}")
    sentences: list[Utterance] = []
    words: list[str] = []
    tags: list[str] = []
    label = NO_LABEL
    columns = None
    line_nos: list[int] = []
    opened_by_i: list[int] = []  # BIO files: lines where an I- tag opens a chunk (IOB1)

    def close() -> None:
        nonlocal words, tags, label, line_nos
        if words:
            fixed = iob1_to_iob2(tags) if SCHEMES[scheme] == "BI" else tags
            if scheme in ("BIO", "IOB2"):
                opened_by_i.extend(n for n, a, b in zip(line_nos, tags, fixed) if a != b)
            sentences.append(Utterance(words, fixed, label))
        words, tags, label, line_nos = [], [], NO_LABEL, []

    for line_no, line in enumerate(read_lines(path), start=1):
        fields = line.split()
        if not fields:
            close()
            continue
        if fields[0] == "-DOCSTART-":
            close()
            continue
        comment = COMMENT.match(line.strip())
        if comment and not words:
            if label_key and comment.group(1) == label_key:
                label = comment.group(2).strip() or NO_LABEL
            continue
        if columns is None:
            columns = len(fields)
            if columns < 2:
                raise DatasetError(
                    f"{path}:{line_no}: 1 column; a CoNLL line holds a token and its tag "
                    "(separated by spaces or tabs)"
                )
            if not -columns <= tag_column < columns or tag_column in (0, -columns):
                raise DatasetError(
                    f"{path}:{line_no}: data.tag_column={tag_column} is not a tag column of "
                    f"this file's {columns} columns (column 0 is the token)"
                )
        elif len(fields) != columns:
            raise DatasetError(
                f"{path}:{line_no}: {len(fields)} columns, but the file's first token line has "
                f"{columns}: {line.strip()!r}"
            )
        tag = fields[tag_column]
        check_tag(tag, scheme, path, line_no)
        words.append(fields[0])
        tags.append(tag)
        line_nos.append(line_no)
    close()
    if not sentences:
        raise DatasetError(f"{path} holds no sentences (token lines)")
    if opened_by_i:
        log.warning(
            "%s:%d: %d chunks open with I- (IOB1 tags, as in the original CoNLL-2003 files); "
            "read as B-, as conlleval reads them (data.scheme=IOB1 says so and silences this)",
            path,
            opened_by_i[0],
            len(opened_by_i),
        )
    return sentences


def iob2_to_iobes(tags: list[str]) -> list[str]:
    """IOB2 -> IOBES: a chunk's last ``I-x`` becomes ``E-x``, a one-token ``B-x`` ``S-x``."""
    out = []
    for i, tag in enumerate(tags):
        following = tags[i + 1] if i + 1 < len(tags) else "O"
        ends = not (following.startswith("I-") and following[2:] == tag[2:])
        if tag.startswith("B-") and ends:
            tag = "S-" + tag[2:]
        elif tag.startswith("I-") and ends:
            tag = "E-" + tag[2:]
        out.append(tag)
    return out


def write_sentence_text(conll_path: str | Path, text_path: str | Path) -> int:
    """The sentences of a CoNLL file as plain text, one per line, tokens joined by spaces (what
    a char LM for ``model.char_lm_features`` trains on); returns the number of sentences."""
    sentences = read_conll(conll_path)
    Path(text_path).write_text(
        "".join(" ".join(s.words) + "\n" for s in sentences), encoding="utf-8"
    )
    return len(sentences)


if __name__ == "__main__":  # python -m seqmodels.data.conll_files train.conll train.txt
    import sys

    if len(sys.argv) != 3:
        sys.exit("usage: python -m seqmodels.data.conll_files <file.conll> <out.txt>")
    count = write_sentence_text(sys.argv[1], sys.argv[2])
    print(f"wrote {count} sentences to {sys.argv[2]}")
