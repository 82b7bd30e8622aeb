"""Character-level word features: a vector per word from its spelling (char CNN or char Bi-LSTM).

Input ``chars [B, T, L]``: for each word its character ids (0 = padding, 1 = unknown char),
``L`` the longest word in the batch, so a word longer than any seen in training is just a
longer row. Output ``[B, T, output_size]``, zeros for padding words; the tagger concatenates it
with the word embedding, so rare and unseen words (city names, artists) are tagged from their
spelling (Lample et al. 2016 use the Bi-LSTM, Ma & Hovy 2016 the CNN).
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence

KINDS = ("cnn", "lstm")


class CharCNN(nn.Module):
    """Char embeddings -> one 1-d convolution (``kernel_size`` wide) -> max over the word."""

    def __init__(self, num_chars: int, char_dim: int, output_size: int, kernel_size: int = 3):
        super().__init__()
        self.embedding = nn.Embedding(num_chars, char_dim, padding_idx=0)
        self.conv = nn.Conv1d(char_dim, output_size, kernel_size, padding=kernel_size // 2)
        self.output_size = output_size

    def forward(self, chars: torch.Tensor) -> torch.Tensor:
        batch, words, length = chars.shape
        flat = chars.reshape(batch * words, length)
        if flat.numel() == 0:
            return self.embedding.weight.new_zeros(batch, words, self.output_size)
        features = self.conv(self.embedding(flat).transpose(1, 2))  # [N, out, L]
        features = features.masked_fill((flat == 0).unsqueeze(1), float("-inf")).amax(dim=2)
        features = features.masked_fill((flat == 0).all(dim=1, keepdim=True), 0.0)
        return features.reshape(batch, words, self.output_size)


class CharLSTM(nn.Module):
    """Char embeddings -> Bi-LSTM over each word; the two final states, concatenated."""

    def __init__(self, num_chars: int, char_dim: int, output_size: int):
        super().__init__()
        if output_size % 2:
            raise ValueError(
                f"model.char_size must be even for the char Bi-LSTM, got {output_size}"
            )
        self.embedding = nn.Embedding(num_chars, char_dim, padding_idx=0)
        self.lstm = nn.LSTM(char_dim, output_size // 2, batch_first=True, bidirectional=True)
        self.output_size = output_size

    def forward(self, chars: torch.Tensor) -> torch.Tensor:
        batch, words, length = chars.shape
        out = self.embedding.weight.new_zeros(batch * words, self.output_size)
        flat = chars.reshape(batch * words, length)
        lengths = (flat != 0).sum(dim=1)
        real = lengths > 0
        if real.any():
            packed = pack_padded_sequence(
                self.embedding(flat[real]),
                lengths[real].cpu(),
                batch_first=True,
                enforce_sorted=False,
            )
            _, (h_n, _) = self.lstm(packed)  # [2, N, out/2]: forward end, backward start
            out = out.index_put((real.nonzero().squeeze(1),), torch.cat([h_n[0], h_n[1]], 1))
        return out.reshape(batch, words, self.output_size)


def build_char_features(kind: str, num_chars: int, char_dim: int, output_size: int) -> nn.Module:
    """The ``model.char_features=`` module: ``cnn`` or ``lstm``."""
    if kind not in KINDS:
        raise ValueError(
            f"model.char_features must be one of {', '.join(KINDS)} or null, got {kind!r}"
        )
    if char_dim < 1 or output_size < 1:
        raise ValueError(
            f"model.char_dim and model.char_size must be >= 1, got {char_dim} and {output_size}"
        )
    if kind == "cnn":
        return CharCNN(num_chars, char_dim, output_size)
    return CharLSTM(num_chars, char_dim, output_size)
