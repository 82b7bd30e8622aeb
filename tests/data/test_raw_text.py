"""Typed text tokenised as ATIS and SNIPS were, with each token's span in the text as typed."""

from __future__ import annotations

import unicodedata

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


def unicode_tokenizer() -> RawTextTokenizer:
    return RawTextTokenizer(
        ["<pad>", "<unk>", "play", "José", "González", "on", "Alice", "مرحبا", "नमस्ते"]
    )


def typed(text: str) -> list[tuple[str, str]]:
    return [(t.text, text[t.start : t.end]) for t in unicode_tokenizer()(text)]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        # Decomposed (NFD, as macOS writes file names): the combining accents stay in the word,
        # the token is the composed (NFC) form the vocabulary has, the span is the text typed.
        (
            unicodedata.normalize("NFD", "play José González"),
            ["play", "José", "González"],
        ),
        ("play José González", ["play", "José", "González"]),
        # Tabs and other white space separate words as spaces do.
        ("play\tJosé\u00a0González\n", ["play", "José", "González"]),
        # Zero-width characters inside a word neither split it nor reach the model.
        ("pl\u200bay Jo\u200dsé\ufeff", ["play", "José"]),
        # Emoji (with a skin tone and a variation selector) are symbols the data never had.
        ("play 👍🏽 José ❤️ on 🎵", ["play", "José", "on"]),
        # Right-to-left words, with direction marks around them; Devanagari's vowel signs and
        # virama are combining marks and stay inside the word.
        ("\u200fمرحبا\u200e play नमस्ते", ["مرحبا", "play", "नमस्ते"]),
    ],
)
def test_unicode_text_is_read_in_its_composed_form_and_spans_index_the_typed_text(
    text: str, expected: list[str]
) -> None:
    tokens = unicode_tokenizer()(text)
    assert [t.text for t in tokens] == expected
    for token in tokens:  # each span covers the token as typed (whatever its normal form)
        typed_form = text[token.start : token.end]
        cleaned = "".join(c for c in typed_form if unicodedata.category(c) != "Cf")
        assert unicodedata.normalize("NFC", cleaned) == token.text
    words = unicode_tokenizer().words
    assert all(t.text in words for t in tokens)


def test_compatibility_forms_are_looked_up_as_their_plain_letters() -> None:
    """Full-width letters (NFKC: plain ASCII) find the vocabulary's word."""
    tokens = unicode_tokenizer()("play Ａｌｉｃｅ")
    assert [t.text for t in tokens] == ["play", "Alice"]
    assert (tokens[1].start, tokens[1].end) == (5, 10)


def test_annotated_text_splits_as_tag_py_does() -> None:
    from seqmodels.data.annotated_files import plain_tokens

    text = unicodedata.normalize("NFD", "play José González") + " 👍"
    got = [(t.text, text[t.start : t.end]) for t in plain_tokens(text)]
    assert got[:3] == [
        ("play", "play"),
        ("José", unicodedata.normalize("NFD", "José")),
        ("González", unicodedata.normalize("NFD", "González")),
    ]


def test_a_vocabulary_stored_decomposed_finds_words_typed_either_way() -> None:
    """Files made on macOS may hold NFD words: the NFD variant of a typed word finds them."""
    nfd = unicodedata.normalize("NFD", "José")
    malaga = unicodedata.normalize("NFD", "Málaga")
    tokenizer = RawTextTokenizer(["<pad>", "<unk>", nfd, "went", "to", malaga])
    for text in (f"{nfd} went to {malaga}", "José went to Málaga"):
        tokens = tokenizer(text)
        assert [t.text for t in tokens] == [nfd, "went", "to", malaga]
        assert [text[t.start : t.end] for t in tokens][1:3] == ["went", "to"]


def test_decomposed_hangul_is_composed_and_spans_index_the_typed_text() -> None:
    """Hangul typed as conjoining jamo (NFD; its vowels and finals are letters, not marks)
    reads as its composed syllables; the spans still cut the jamo typed."""
    from seqmodels.data.raw_text import split_tokens

    text = (
        "날씨 " + unicodedata.normalize("NFD", "서울 날씨") + " 가\u11a8"
    )  # a syllable + a final jamo
    tokens = split_tokens(text)
    assert [t.text for t in tokens] == ["날씨", "서울", "날씨", "각"]
    for token in tokens:
        assert unicodedata.normalize("NFC", text[token.start : token.end]) == token.text
    assert RawTextTokenizer(["서울", "날씨"])(text)[1].text == "서울"
