"""Raw typed text -> the tokens a slot tagger was trained on, each with its span in the text.

ATIS and SNIPS are lower-case with punctuation removed. ATIS keeps apostrophes inside words
(``i'd``, ``what's``, ``york's``) and a few dotted words (``st.``), writes times ``5 pm`` and
``1115 am`` (11:15); SNIPS splits at apostrophes (``what s``) and keeps hyphens (``top-rated``)
and a few symbols (``&``, ``r&b``). :class:`RawTextTokenizer` follows whichever of these the
training vocabulary shows and records where each token came from in the text, so a slot's value
can be cut from the text as it was typed.

Unicode: the text is read in its composed form (NFC), so a decomposed ``José`` (``e`` + a
combining accent, as macOS and some keyboards write it) is one word ``José``; a combining mark
that does not compose (Devanagari's vowel signs) stays inside its word; zero-width and direction
characters (format characters: ZWSP, ZWJ, BOM, RLM, ...) are skipped. A token the vocabulary
lacks is also looked up in its compatibility form (NFKC: full-width ``Ａｌｉｃｅ`` as ``Alice``)
and decomposed (NFD: a vocabulary from files made on macOS). Hangul typed as conjoining jamo
is composed into its syllables too (its vowels and finals are letters, not marks).
Token spans always index the text as typed (:func:`split_tokens`).
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Sequence
from typing import NamedTuple

from seqmodels.data.word_forms import word_form

TOKEN = re.compile(
    r"\d{1,2}(?::\d\d){1,2}"  # a clock time, 5:30, 13:22:09
    r"|\d{1,4}/\d{1,2}/\d{1,4}"  # a date, 2/7/2021
    r"|\d{1,3}(?:,\d{3})+(?!\d)"  # a number with thousands separators, 1,000
    r"|\d+(?=(?:[ap]m|[ap]\.m\.?)(?!\w))"  # the number of 5pm / 5p.m. (the data: "5 pm")
    r"|(?:[^\W\d_]\.){2,}"  # an abbreviation with its dots, a.m., U.S.
    r"|\w+(?:['’&.-]\w+)*"  # a word, with its inner apostrophes, dots, hyphens, ampersands
    r"|[^\w\s]"  # any other character on its own
)
PART = re.compile(r"\w+")
APOSTROPHES = "'’"
# Written differently in the training data? The forms tried for an out-of-vocabulary token.
VARIANTS = (
    lambda t: unicodedata.normalize("NFKC", t),  # full-width letters, ligatures, ...
    lambda t: unicodedata.normalize("NFD", t),  # a vocabulary stored decomposed (macOS files)
    lambda t: t.replace("’", "'"),  # typographic apostrophe
    lambda t: t.replace(":", ""),  # 11:15 -> 1115 (ATIS)
    lambda t: t.replace(",", ""),  # 1,000 -> 1000
    lambda t: t.replace(".", ""),  # p.m -> pm
)


class Token(NamedTuple):
    """``text`` as the model reads it; ``start:end`` is where it was typed in the input."""

    text: str
    start: int
    end: int


def composes(group: str, char: str) -> bool:
    """Whether ``char`` belongs to the composed character ``group`` starts: a combining mark,
    or a letter NFC merges into it (Hangul's vowel and final jamo, category Lo)."""
    if unicodedata.category(char)[0] == "M":
        return True
    return len(unicodedata.normalize("NFC", group + char)) <= len(
        unicodedata.normalize("NFC", group)
    )


def normalized(text: str) -> tuple[str, str, list[int], list[int]]:
    """``text`` composed (NFC) without format characters, the same with every remaining
    combining mark as a letter (what the :data:`TOKEN` pattern reads, so marks stay inside
    words), and for each of its characters the ``[start, end)`` span typed in ``text``."""
    if text.isascii():
        return text, text, list(range(len(text))), list(range(1, len(text) + 1))
    out, shadow, starts, ends = [], [], [], []
    i = 0
    while i < len(text):
        j = i + 1  # a character and the combining marks after it compose together
        while j < len(text) and composes(text[i:j], text[j]):
            j += 1
        base = len(out)
        for c in unicodedata.normalize("NFC", text[i:j]):
            category = unicodedata.category(c)
            if category == "Cf":  # zero-width, direction marks, BOM: nothing to read
                continue
            if category[0] == "M" and not (len(out) > base and shadow[-1].isalnum()):
                continue  # a mark on a symbol (an emoji's variation selector) or on nothing
            out.append(c)
            shadow.append("a" if category[0] == "M" else c)
            starts.append(i)
            ends.append(j)
        i = j
    return "".join(out), "".join(shadow), starts, ends


def split_tokens(text: str) -> list[Token]:
    """The :data:`TOKEN` matches of ``text`` read in NFC (see :func:`normalized`): each
    token's ``text`` is its composed form, its ``start:end`` its span as typed."""
    composed, shadow, starts, ends = normalized(text)
    return [
        Token(composed[m.start() : m.end()], starts[m.start()], ends[m.end() - 1])
        for m in TOKEN.finditer(shadow)
    ]


class RawTextTokenizer:
    """Tokens of typed text in the training data's form, guided by the training ``words``.

    ``words`` is the vocabulary, most frequent first (as :meth:`Vocab.build` orders it).
    Lower-cases when no training word has a capital. A compound of words that the vocabulary
    lacks in any of its :data:`VARIANTS` (``denver's``, ``round-trip``) is split into its
    parts, which tell the model more than ``<unk>`` would (a time or a date stays whole); a
    possessive ``'s`` is then dropped where the data keeps apostrophes inside words (ATIS:
    some such word is more frequent than a lone ``s``), kept as ``s`` where it splits there
    (SNIPS: ``what s``, ``gretchen s``). Punctuation the vocabulary lacks is dropped (the model
    never saw it); punctuation it has is kept, joined to the word it touches when the
    vocabulary has them together (``St.`` -> ``st.``).

    ``forms``: the vocabulary's word forms (:mod:`seqmodels.data.word_forms`); a token counts
    as known when its form is in ``words``, and stays as typed (its chars feed the model). With
    ``lower``, the characters ``chars`` (if given) tell whether the data has capitals.
    """

    def __init__(
        self,
        words: Sequence[str],
        forms: Sequence[str] = (),
        chars: Sequence[str] | None = None,
    ) -> None:
        self.words, self.forms = set(words), list(forms)
        if "lower" in self.forms:
            self.lowercase = chars is not None and all(c == c.lower() for c in chars)
        else:
            self.lowercase = all(w == w.lower() for w in self.words)
        rank = {w: i for i, w in reversed(list(enumerate(words)))}
        first_apostrophe = min(
            (i for w, i in rank.items() if any(c in w for c in APOSTROPHES)), default=len(rank)
        )
        self.keeps_apostrophes = first_apostrophe < rank.get("s", len(rank))

    def in_vocabulary_form(self, token: str) -> str:
        """``token`` (lower-cased if the data is), or its first variant the vocabulary has."""
        token = token.lower() if self.lowercase else token
        if self.knows(token):
            return token
        for variant in VARIANTS:
            if self.knows(form := variant(token)):
                return form
        return token

    def knows(self, token: str) -> bool:
        """Whether the vocabulary has ``token`` (in its form)."""
        return word_form(token, self.forms) in self.words

    def __call__(self, text: str) -> list[Token]:
        tokens: list[Token] = []
        composed, shadow, starts, ends = normalized(text)
        for match in TOKEN.finditer(shadow):
            raw = composed[match.start() : match.end()]
            start, end = starts[match.start()], ends[match.end() - 1]
            form = self.in_vocabulary_form(raw)
            if not PART.match(match.group()):  # punctuation
                joined = tokens[-1].text + form if tokens and tokens[-1].end == start else None
                if joined is not None and self.knows(joined):
                    tokens[-1] = Token(joined, tokens[-1].start, end)
                elif self.knows(form):
                    tokens.append(Token(form, start, end))
                continue
            parts = list(PART.finditer(match.group()))
            if self.knows(form) or len(parts) == 1 or not any(c.isalpha() for c in raw):
                tokens.append(Token(form, start, end))
                continue
            for part in parts:  # a compound the training data never wrote as one token
                after_apostrophe = raw[part.start() - 1] in APOSTROPHES if part.start() else False
                if after_apostrophe and raw[part.start() : part.end()].lower() == "s":
                    if self.keeps_apostrophes:
                        continue
                form = self.in_vocabulary_form(raw[part.start() : part.end()])
                at = match.start() + part.start()
                tokens.append(Token(form, starts[at], ends[at + part.end() - part.start() - 1]))
        return tokens
