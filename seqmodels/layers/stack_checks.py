"""The options every layer stack (RNN, minGRU/minLSTM) shares, checked in one place."""

from __future__ import annotations


def check_stack(
    cell: str, cells: tuple[str, ...], hidden_size: int, num_layers: int, dropout: float
) -> None:
    """The options every layer stack shares, each refused by its name."""
    if cell not in cells:
        raise ValueError(f"model.cell={cell!r} is not one of {', '.join(cells)}")
    for option, value in (("hidden_size", hidden_size), ("num_layers", num_layers)):
        if value < 1:
            raise ValueError(f"model.{option} must be >= 1, got {value}")
    if not 0.0 <= dropout < 1.0:
        raise ValueError(f"model.dropout must be in [0, 1), got {dropout}")
