"""Chunks (entities) of a tag sequence by conlleval's rules, as seqeval's ``get_entities``.

:mod:`seqmodels.metrics` scores spans with seqeval itself; tagging typed text uses this copy of
its chunking because importing seqeval loads scikit-learn (over a second before the first
answer). ``tests/test_chunks.py`` checks the two agree on every sequence it draws.
"""

from __future__ import annotations

from collections.abc import Sequence

Span = tuple[str, int, int]  # (type, first token, last token)


def _ends(prev_tag: str, tag: str, prev_type: str, type_: str) -> bool:
    """A chunk ended between the previous token and this one."""
    if prev_tag in ("E", "S"):
        return True
    if prev_tag in ("B", "I") and tag in ("B", "S", "O"):
        return True
    return prev_tag not in ("O", ".") and prev_type != type_


def _starts(prev_tag: str, tag: str, prev_type: str, type_: str) -> bool:
    """A chunk starts at this token (``O I-x`` opens one, as conlleval counts it)."""
    if tag in ("B", "S"):
        return True
    if prev_tag in ("E", "S", "O") and tag in ("E", "I"):
        return True
    return tag not in ("O", ".") and prev_type != type_


def chunks(tags: Sequence[str]) -> list[Span]:
    """``[(type, first, last), ...]``: the chunks of ``B-x``/``I-x``/``E-x``/``S-x``/``O`` tags."""
    found: list[Span] = []
    prev_tag, prev_type, begin = "O", "", 0
    for i, label in enumerate([*tags, "O"]):
        tag, type_ = label[0], label[1:].split("-", maxsplit=1)[-1] or "_"
        if _ends(prev_tag, tag, prev_type, type_):
            found.append((prev_type, begin, i - 1))
        if _starts(prev_tag, tag, prev_type, type_):
            begin = i
        prev_tag, prev_type = tag, type_
    return found
