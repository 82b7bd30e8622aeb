"""The form in which a word is looked up in the word vocabulary (Lample et al. 2016's
``lower`` and ``zeros`` options): as written, lower-cased, and/or with every digit as ``0``.

Only the word embedding sees the form; char features and char-LM features read the word as
written, so case and digits still reach the tagger through them. A checkpoint records its forms
in ``vocabs["word_forms"]`` (a plain list), so tagging and evaluation look words up the same way.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence

from seqmodels.core.errors import ConfigError

__all__ = ["WORD_FORMS", "check_word_forms", "word_form", "word_forms_of"]

WORD_FORMS = ("lower", "zero_digits")
_DIGIT = re.compile(r"\d")


def check_word_forms(forms: Iterable[str]) -> list[str]:
    """``forms`` as a list in canonical order; an unknown one is refused, naming the known."""
    forms = list(forms)
    if unknown := [f for f in forms if f not in WORD_FORMS]:
        raise ConfigError(
            f"unknown word form(s) {', '.join(map(repr, unknown))}; known: {', '.join(WORD_FORMS)}"
        )
    return [f for f in WORD_FORMS if f in forms]


def word_forms_of(lowercase_words: bool, zero_digits: bool) -> list[str]:
    """The forms the two ``data.`` switches ask for."""
    return [f for f, on in zip(WORD_FORMS, (lowercase_words, zero_digits), strict=True) if on]


def word_form(word: str, forms: Sequence[str]) -> str:
    """``word`` in the vocabulary's form: ``"Route 66"`` -> ``"route 00"`` with both forms."""
    if "lower" in forms:
        word = word.lower()
    if "zero_digits" in forms:
        word = _DIGIT.sub("0", word)
    return word
