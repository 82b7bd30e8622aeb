"""The slot tagger's switches: word dropout, intent-to-slot, self-attention, decoder, scheme."""

from __future__ import annotations

import pytest
import torch

from seqmodels.core.errors import ConfigError
from seqmodels.nets.slot_inputs import (
    IntentToSlot,
    StateAttention,
    WordInputs,
    build_decoder,
    tag_scheme,
)

VOCABS = {"words": ["<pad>", "<unk>", "a", "b"], "chars": ["<pad>", "<unk>", "a", "b"]}


def test_word_dropout_only_in_training_and_never_on_padding() -> None:
    inputs = WordInputs({"word_dropout": 0.5}, VOCABS, 4)
    torch.manual_seed(0)
    words = torch.tensor([[2, 3, 2, 3] * 50 + [0] * 20])
    dropped = inputs.train().drop_words(words)
    assert torch.equal(dropped[:, -20:], words[:, -20:])  # padding stays padding
    changed = dropped[:, :200] != words[:, :200]
    assert (dropped[:, :200][changed] == 1).all() and 60 < int(changed.sum()) < 140
    assert torch.equal(inputs.eval().drop_words(words), words)
    with pytest.raises(ConfigError, match="model.word_dropout"):
        WordInputs({"word_dropout": 1.0}, VOCABS, 4)


def test_char_features_need_a_char_vocabulary() -> None:
    assert WordInputs({"char_features": "cnn", "char_size": 6}, VOCABS, 4).output_size == 10
    with pytest.raises(ConfigError, match="character vocabulary"):
        WordInputs({"char_features": "cnn"}, {"words": VOCABS["words"]}, 4)
    with pytest.raises(ConfigError, match="model.char_features"):
        WordInputs({"char_features": "rnn"}, VOCABS, 4)


def test_intent_to_slot_concatenates_the_pooled_vector() -> None:
    states, pooled = torch.randn(2, 3, 4), torch.randn(2, 4)
    off, on = IntentToSlot({}, 4), IntentToSlot({"intent_to_slot": True}, 4)
    assert torch.equal(off(states, pooled), states)
    out = on(states, pooled)
    assert out.shape == (2, 3, 8) and on.output_size == 8
    assert torch.equal(out[:, 0, 4:], out[:, 2, 4:])  # the same context for every token


def test_decoder_and_scheme() -> None:
    assert build_decoder("softmax", ["O", "B-a"]) is None
    assert tag_scheme(["<pad>", "O", "B-a", "I-a"]) == "BIO"
    assert tag_scheme(["O", "B-a", "E-a", "S-b"]) == "IOBES"
    crf = build_decoder("crf", ["<pad>", "O", "B-a", "E-a", "S-a"])
    assert not crf.allowed_end[2] and crf.allowed_end[3]  # IOBES: a chunk must be closed
    with pytest.raises(ConfigError, match="task.module.decoder"):
        build_decoder("hmm", ["O"])


def test_self_attention_never_reads_padding_and_names_a_bad_option() -> None:
    torch.manual_seed(0)
    attend = StateAttention({"self_attention": 4}, 8).eval()
    states = torch.randn(3, 5, 8)
    mask = torch.tensor([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1], [0, 0, 0, 0, 0]], dtype=torch.bool)
    out = attend(states, mask)
    changed = states.clone()
    changed[0, 3:] = 100.0  # padding of the first row
    assert torch.allclose(attend(changed, mask)[0, :3], out[0, :3], atol=1e-6)
    assert torch.isfinite(out).all()  # the all-padding row too
    assert not torch.allclose(out[1], states[1])  # it does change real states
    assert StateAttention({"self_attention": 0}, 8)(states, mask) is states
    for heads in (3, -1, "two"):
        with pytest.raises(ConfigError, match="model.self_attention"):
            StateAttention({"self_attention": heads}, 8)
