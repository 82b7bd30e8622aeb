"""Char CNN / Bi-LSTM word features: shapes, padding, unseen long words, empty batches."""

from __future__ import annotations

import pytest
import torch

from seqmodels.data.slot_filling import encode_chars, pad_chars
from seqmodels.data.vocab import Vocab
from seqmodels.layers.char_features import build_char_features


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
