"""A token <-> id mapping that round-trips through a plain list (checkpoint friendly)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable

PAD = "<pad>"
UNK = "<unk>"


class Vocab:
    """Index ``itos[i]`` is token ``i``; ``pad`` (if any) is id 0, ``unk`` (if any) follows it."""

    def __init__(self, itos: list[str], unk: str | None = UNK) -> None:
        if len(set(itos)) != len(itos):
            raise ValueError("vocabulary has duplicate entries")
        self.itos = list(itos)
        self.stoi = {token: i for i, token in enumerate(self.itos)}
        self.unk_index = self.stoi[unk] if unk is not None else None
        self.pad_index = self.stoi.get(PAD)

    @classmethod
    def build(
        cls,
        sequences: Iterable[Iterable[str]],
        min_freq: int = 1,
        specials: tuple[str, ...] = (PAD, UNK),
        unk: str | None = UNK,
    ) -> Vocab:
        """Specials first, then tokens seen at least ``min_freq`` times, most frequent first."""
        counts = Counter(token for seq in sequences for token in seq)
        tokens = sorted(
            (t for t, c in counts.items() if c >= min_freq and t not in specials),
            key=lambda t: (-counts[t], t),
        )
        return cls(list(specials) + tokens, unk=unk)

    def __len__(self) -> int:
        return len(self.itos)

    def __contains__(self, token: str) -> bool:
        return token in self.stoi

    def encode(self, tokens: Iterable[str]) -> list[int]:
        if self.unk_index is None:
            return [self.stoi[t] for t in tokens]
        return [self.stoi.get(t, self.unk_index) for t in tokens]

    def decode(self, ids: Iterable[int]) -> list[str]:
        return [self.itos[i] for i in ids]
