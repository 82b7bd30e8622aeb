"""Long-range memory problems as batch generators: the adding problem and the copy problem.

Each function draws one batch from a ``torch.Generator``, so a batch is a pure function of the
generator's seed: the DataModule seeds one per batch and never touches the global RNG.
"""

from __future__ import annotations

import torch

# Copy problem tokens: 0 is the blank, 1..num_symbols the symbols, num_symbols + 1 the "recall
# now" delimiter.
BLANK = 0


def adding_batch(
    generator: torch.Generator, batch_size: int, length: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """The adding problem (Hochreiter & Schmidhuber 1997; Le et al. 2015).

    Each step carries two features: a value drawn from U(0, 1) and a marker. Exactly two steps
    are marked, one in the first half and one in the second; the target is the sum of their
    values. Predicting the mean (1.0) gives MSE = Var(U1 + U2) = 1/6 ~ 0.167 (chance).

    Returns ``x [B, length, 2]`` (value, marker) and ``y [B]``.
    """
    if length < 2:
        raise ValueError(f"the adding problem needs data.length >= 2, got {length}")
    values = torch.rand(batch_size, length, generator=generator)
    half = length // 2
    first = torch.randint(0, half, (batch_size,), generator=generator)
    second = torch.randint(half, length, (batch_size,), generator=generator)
    markers = torch.zeros(batch_size, length)
    rows = torch.arange(batch_size)
    markers[rows, first] = 1.0
    markers[rows, second] = 1.0
    target = values[rows, first] + values[rows, second]
    return torch.stack([values, markers], dim=-1), target


def copy_batch(
    generator: torch.Generator, batch_size: int, length: int, num_symbols: int, copy_length: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """The copy (memory) problem (Hochreiter & Schmidhuber 1997; Arjovsky et al. 2016).

    A sequence of ``length`` tokens starts with ``copy_length`` symbols from ``1..num_symbols``,
    then blanks; ``copy_length`` steps before the end a delimiter (``num_symbols + 1``) asks for
    the symbols back. The target is the symbols, to be emitted at the last ``copy_length``
    steps (the delimiter's and the blanks after it). Guessing gives accuracy ``1/num_symbols``.

    Returns ``x [B, length]`` (token ids) and ``y [B, copy_length]`` (symbol ids, 1-based).
    """
    if num_symbols < 2 or copy_length < 1:
        raise ValueError(
            f"the copy problem needs data.num_symbols >= 2 and data.copy_length >= 1, "
            f"got {num_symbols} and {copy_length}"
        )
    if length < 2 * copy_length + 1:
        raise ValueError(
            f"the copy problem needs data.length >= 2 * data.copy_length + 1 = "
            f"{2 * copy_length + 1} (symbols, a blank stretch, the recall steps), got {length}"
        )
    symbols = torch.randint(1, num_symbols + 1, (batch_size, copy_length), generator=generator)
    x = torch.full((batch_size, length), BLANK, dtype=torch.long)
    x[:, :copy_length] = symbols
    x[:, length - copy_length] = num_symbols + 1
    return x, symbols
