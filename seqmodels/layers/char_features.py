"""Character-level word features: a vector per word from its spelling (char CNN or char Bi-LSTM).

Input ``chars [B, T, L]``: for each word its character ids (0 = padding, 1 = unknown char),
``L`` the longest word in the batch, so a word longer than any seen in training is just a
longer row. A word longer than ``max_len`` characters (a URL, a hashtag chain) is read as its
first ``max_len // 2`` and last ``max_len - max_len // 2`` characters: the prefix and the
suffix say most about a word, and one such token no longer widens a whole batch. On the CPU,
eagerly, only real words are encoded (a batch of sentences of different lengths is mostly padding).
Output ``[B, T, output_size]``, zeros for padding words; the tagger concatenates it with the
word embedding, so rare and unseen words (city names, artists) are tagged from their spelling
(Lample et al. 2016 use the Bi-LSTM, Ma & Hovy 2016 the CNN).
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence

KINDS = ("cnn", "lstm")


def traced() -> bool:
    """Under ``torch.compile`` / ``torch.export`` / ``torch.jit.trace`` (no data-dependent
    shapes there)."""
    exporting = getattr(torch.compiler, "is_exporting", lambda: False)
    return torch.compiler.is_compiling() or exporting() or torch.jit.is_tracing()


MAX_LEN = 30  # model.char_max_len's default; None (a checkpoint from before it): no limit


def clip_words(chars: torch.Tensor, max_len: int | None) -> torch.Tensor:
    """``chars [N, L]`` (0 = padding, words left-aligned) -> ``[N, min(L, max_len)]``: a word
    longer than ``max_len`` keeps its first ``max_len // 2`` and its last characters."""
    if max_len is None or chars.size(1) <= max_len:
        return chars
    lengths = (chars != 0).sum(dim=1, keepdim=True)
    positions = torch.arange(max_len, device=chars.device).unsqueeze(0)
    head = max_len // 2
    from_end = lengths - max_len + positions  # the last max_len - head characters
    index = torch.where((lengths > max_len) & (positions >= head), from_end, positions)
    return chars.gather(1, index)


class CharCNN(nn.Module):
    """Char embeddings -> one 1-d convolution (``kernel_size`` wide) -> max over the word."""

    def __init__(
        self,
        num_chars: int,
        char_dim: int,
        output_size: int,
        kernel_size: int = 3,
        max_len: int | None = MAX_LEN,
    ):
        super().__init__()
        self.embedding = nn.Embedding(num_chars, char_dim, padding_idx=0)
        self.conv = nn.Conv1d(char_dim, output_size, kernel_size, padding=kernel_size // 2)
        self.output_size, self.max_len = output_size, max_len

    def forward(self, chars: torch.Tensor) -> torch.Tensor:
        batch, words, length = chars.shape
        flat = clip_words(chars.reshape(batch * words, length), self.max_len)
        if flat.is_cuda or traced():  # every row: choosing the real words is data-dependent
            return self.encode(flat).reshape(batch, words, self.output_size)
        out = self.embedding.weight.new_zeros(batch * words, self.output_size)
        real_ids = (flat != 0).any(dim=1).nonzero().squeeze(1)
        if real_ids.numel():
            features = self.encode(flat.index_select(0, real_ids))
            out = out.index_put((real_ids,), features.to(out.dtype))
        return out.reshape(batch, words, self.output_size)

    def encode(self, word_chars: torch.Tensor) -> torch.Tensor:
        """``[N, L]`` char ids -> ``[N, output_size]`` (zeros for a row of padding)."""
        if word_chars.numel() == 0:
            return self.embedding.weight.new_zeros(word_chars.size(0), self.output_size)
        features = self.conv(self.embedding(word_chars).transpose(1, 2))  # [N, out, L]
        pad = (word_chars == 0).unsqueeze(1)
        features = features.masked_fill(pad, float("-inf")).amax(dim=2)
        return features.masked_fill(pad.all(dim=2), 0.0)


class CharLSTM(nn.Module):
    """Char embeddings -> Bi-LSTM over each word; the two final states, concatenated."""

    def __init__(
        self, num_chars: int, char_dim: int, output_size: int, max_len: int | None = MAX_LEN
    ):
        super().__init__()
        if output_size % 2:
            raise ValueError(
                f"model.char_size must be even for the char Bi-LSTM, got {output_size}"
            )
        self.embedding = nn.Embedding(num_chars, char_dim, padding_idx=0)
        self.lstm = nn.LSTM(char_dim, output_size // 2, batch_first=True, bidirectional=True)
        self.output_size, self.max_len = output_size, max_len

    def forward(self, chars: torch.Tensor) -> torch.Tensor:
        batch, words, length = chars.shape
        out = self.embedding.weight.new_zeros(batch * words, self.output_size)
        flat = chars.reshape(batch * words, length)
        lengths = (flat != 0).sum(dim=1)
        real = lengths > 0
        if real.any():
            word_chars = clip_words(flat[real], self.max_len)
            packed = pack_padded_sequence(
                self.embedding(word_chars),
                (word_chars != 0).sum(dim=1).cpu(),
                batch_first=True,
                enforce_sorted=False,
            )
            _, (h_n, _) = self.lstm(packed)  # [2, N, out/2]: forward end, backward start
            out = out.index_put((real.nonzero().squeeze(1),), torch.cat([h_n[0], h_n[1]], 1))
        return out.reshape(batch, words, self.output_size)


def build_char_features(
    kind: str, num_chars: int, char_dim: int, output_size: int, max_len: int | None = None
) -> nn.Module:
    """The ``model.char_features=`` module: ``cnn`` or ``lstm``; ``max_len``: the longest word
    it reads whole (``model.char_max_len``; None: every word whole)."""
    if kind not in KINDS:
        raise ValueError(
            f"model.char_features must be one of {', '.join(KINDS)} or null, got {kind!r}"
        )
    if char_dim < 1 or output_size < 1:
        raise ValueError(
            f"model.char_dim and model.char_size must be >= 1, got {char_dim} and {output_size}"
        )
    whole = isinstance(max_len, int) and not isinstance(max_len, bool)
    if max_len is not None and not (whole and max_len >= 2):
        raise ValueError(f"model.char_max_len must be >= 2 or null, got {max_len}")
    if kind == "cnn":
        return CharCNN(num_chars, char_dim, output_size, max_len=max_len)
    return CharLSTM(num_chars, char_dim, output_size, max_len=max_len)
