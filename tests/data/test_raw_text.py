"""Typed text tokenised as ATIS and SNIPS were, with each token's span in the text as typed."""

from __future__ import annotations

import pytest
from conftest import DATA_DIR, requires_data

from seqmodels.data.raw_text import RawTextTokenizer
from seqmodels.data.vocab import Vocab


def tokenizer(name: str) -> RawTextTokenizer:
    """From the vocabulary training builds (most frequent words first)."""
    lines = (DATA_DIR / name / "train" / "seq.in").read_text(encoding="utf-8").splitlines()
    return RawTextTokenizer(Vocab.build(line.split() for line in lines).itos)


def tokens_and_typed(name: str, text: str) -> list[tuple[str, str]]:
    return [(t.text, text[t.start : t.end]) for t in tokenizer(name)(text)]


@requires_data
@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "Show me flights from Denver, to Boston on Monday!",
            [("show", "Show"), ("me", "me"), ("flights", "flights"), ("from", "from"),
             ("denver", "Denver"), ("to", "to"), ("boston", "Boston"), ("on", "on"),
             ("monday", "Monday")],
        ),
        # ATIS keeps contractions and "st." whole, writes "5 pm" and 11:15 as "1115".
        (
            "I'd fly from St. Louis at 5pm or 11:15 a.m.",
            [("i'd", "I'd"), ("fly", "fly"), ("from", "from"), ("st.", "St."),
             ("louis", "Louis"), ("at", "at"), ("5", "5"), ("pm", "pm"), ("or", "or"),
             ("1115", "11:15"), ("am", "a.m.")],
        ),
        # A compound ATIS never wrote whole: its parts; a possessive 's dropped.
        (
            "What’s Denver's cheapest round-trip?",
            [("what's", "What’s"), ("denver", "Denver"), ("cheapest", "cheapest"),
             ("round", "round"), ("trip", "trip")],
        ),
    ],
)  # fmt: skip
def test_atis_forms(text: str, expected: list[tuple[str, str]]) -> None:
    assert tokens_and_typed("atis", text) == expected


@requires_data
def test_snips_forms() -> None:
    """SNIPS splits at apostrophes ("what s"), keeps hyphens, "&" and "playlist:" as written."""
    assert tokens_and_typed("snips", "What's on Gretchen's Top-Rated R&B playlist: now?") == [
        ("what", "What"), ("s", "s"), ("on", "on"), ("gretchen", "Gretchen"), ("s", "s"),
        ("top-rated", "Top-Rated"), ("r&b", "R&B"), ("playlist:", "playlist:"), ("now", "now"),
    ]  # fmt: skip
    # Times and dates stay whole, as SNIPS writes them, even when this one is new to it.
    assert tokens_and_typed("snips", "Rain at 13:22:09 on 2/7/2021?")[2:] == [
        ("13:22:09", "13:22:09"), ("on", "on"), ("2/7/2021", "2/7/2021"),
    ]  # fmt: skip


def test_case_is_kept_when_the_training_words_have_capitals() -> None:
    tokenize = RawTextTokenizer(["<pad>", "<unk>", "EU", "rejects", ",", "German", "call"])
    tokens = tokenize("EU rejects German call, says")
    assert [t.text for t in tokens] == ["EU", "rejects", "German", "call", ",", "says"]
    assert (tokens[4].start, tokens[4].end) == (22, 23)  # punctuation the vocabulary has stays
    assert tokenize("  ?! ") == []
