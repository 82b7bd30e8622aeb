"""Character ids of tokenised sentences: what a model with ``model.char_features`` reads.

Shared by the slot-filling DataModule and by tagging typed text (which needs no Lightning).
"""

from __future__ import annotations

import torch

from seqmodels.data.vocab import Vocab

__all__ = ["encode_chars", "pad_chars"]


def encode_chars(tokens: list[str], chars: Vocab) -> torch.Tensor:
    """``[T, longest word]`` char ids of one utterance (unknown chars -> ``<unk>``)."""
    out = torch.zeros(len(tokens), max((len(t) for t in tokens), default=1), dtype=torch.long)
    for i, token in enumerate(tokens):
        out[i, : len(token)] = torch.tensor(chars.encode(token), dtype=torch.long)
    return out


def pad_chars(words: list[torch.Tensor]) -> torch.Tensor:
    """Per utterance ``[T_i, L_i]`` char ids -> ``[B, max T, max L]`` (0 = padding)."""
    longest_word = max((w.size(1) for w in words), default=0)
    longest_utt = max((w.size(0) for w in words), default=0)
    out = torch.zeros(len(words), longest_utt, max(longest_word, 1), dtype=torch.long)
    for i, w in enumerate(words):
        out[i, : w.size(0), : w.size(1)] = w
    return out
