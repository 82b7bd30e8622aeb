"""Char CNN / Bi-LSTM word features: shapes, padding, unseen long words, empty batches."""

from __future__ import annotations

import pytest
import torch

from seqmodels.data.slot_filling import encode_chars, pad_chars
from seqmodels.data.vocab import Vocab
from seqmodels.layers.char_features import build_char_features, clip_words


@pytest.mark.parametrize("kind", ["cnn", "lstm"])
def test_padding_words_are_zero_and_real_words_do_not_depend_on_padding(kind: str) -> None:
    torch.manual_seed(0)
    module = build_char_features(kind, num_chars=10, char_dim=4, output_size=6).eval()
    chars = torch.tensor([[[2, 3, 0, 0], [4, 0, 0, 0], [0, 0, 0, 0]]])  # two words + a pad word
    out = module(chars)
    assert out.shape == (1, 3, 6)
    assert torch.equal(out[0, 2], torch.zeros(6))
    assert out[0, :2].abs().sum() > 0
    wider = torch.nn.functional.pad(chars, (0, 5))  # more char padding: same features
    torch.testing.assert_close(module(wider), out)


@pytest.mark.parametrize("kind", ["cnn", "lstm"])
def test_words_longer_than_any_seen_and_unknown_chars(kind: str) -> None:
    vocab = Vocab.build(["abc", "ab"])
    long_word = "abcabcabcabcabcabcabcabcabcabcabcabcabcabcxyz"  # x, y, z never seen
    chars = pad_chars([encode_chars(["ab", long_word], vocab)])
    assert chars.shape == (1, 2, len(long_word))
    assert chars[0, 1, -1] == vocab.unk_index
    module = build_char_features(kind, len(vocab), 4, 6)
    out = module(chars)
    assert out.shape == (1, 2, 6) and torch.isfinite(out).all()
    out.sum().backward()  # gradients flow through long words as well


@pytest.mark.parametrize("kind", ["cnn", "lstm"])
@pytest.mark.parametrize("shape", [(0, 5, 3), (2, 0, 3), (0, 0, 1)])
def test_empty_batches(kind: str, shape: tuple[int, int, int]) -> None:
    module = build_char_features(kind, 10, 4, 6)
    assert module(torch.zeros(shape, dtype=torch.long)).shape == (*shape[:2], 6)
    assert pad_chars([]).shape == (0, 0, 1)


def test_bad_options() -> None:
    with pytest.raises(ValueError, match="model.char_features"):
        build_char_features("gru", 10, 4, 6)
    with pytest.raises(ValueError, match="model.char_size must be even"):
        build_char_features("lstm", 10, 4, 5)
    for bad in (1, 12.5, "abc", True):
        with pytest.raises(ValueError, match="model.char_max_len"):
            build_char_features("cnn", 10, 4, 6, max_len=bad)


def test_clip_words_keeps_the_head_and_the_tail_of_long_words() -> None:
    chars = torch.tensor([[1, 2, 3, 4, 5, 6, 7, 8, 9], [1, 2, 3, 0, 0, 0, 0, 0, 0]])
    clipped = clip_words(chars, 5)
    assert clipped.tolist() == [[1, 2, 7, 8, 9], [1, 2, 3, 0, 0]]
    assert clip_words(chars, 9) is chars and clip_words(chars, None) is chars


@pytest.mark.parametrize("kind", ["cnn", "lstm"])
def test_a_long_word_reads_as_its_clipped_form_and_others_as_before(kind: str) -> None:
    torch.manual_seed(0)
    capped = build_char_features(kind, 12, 4, 6, max_len=6).eval()
    whole = build_char_features(kind, 12, 4, 6, max_len=None).eval()
    whole.load_state_dict(capped.state_dict())
    long_word = [2, 3, 4, 5, 6, 7, 8, 9, 10, 11]
    chars = torch.tensor([[long_word, [2, 3, 4, 0, 0, 0, 0, 0, 0, 0]]])
    short = torch.tensor([[[2, 3, 4]]])
    clipped = torch.tensor([[[2, 3, 4, 9, 10, 11]]])  # first 3, last 3
    out = capped(chars)
    torch.testing.assert_close(out[0, 1], whole(short)[0, 0])  # short words: unchanged
    torch.testing.assert_close(out[0, 0], whole(clipped)[0, 0])
    assert not torch.allclose(out[0, 0], whole(chars)[0, 0])  # the cap did something
