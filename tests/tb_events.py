"""Read TensorBoard event files back with tensorboard's own reader."""

from __future__ import annotations

from pathlib import Path

from tensorboard.backend.event_processing.event_accumulator import EventAccumulator


def scalar_tags(log_dir: Path) -> dict[str, list[float]]:
    """Every scalar tag in ``log_dir``'s event files, with its values in step order."""
    values: dict[str, list[float]] = {}
    for event_file in sorted(log_dir.glob("events.out.tfevents.*")):
        acc = EventAccumulator(str(event_file), size_guidance={"scalars": 0})
        acc.Reload()
        for tag in acc.Tags()["scalars"]:
            values.setdefault(tag, []).extend(e.value for e in acc.Scalars(tag))
    return values


def scalar_steps(event_file: Path, tag: str) -> list[int]:
    """The steps at which one event file holds ``tag``, in order."""
    acc = EventAccumulator(str(event_file), size_guidance={"scalars": 0})
    acc.Reload()
    return [e.step for e in acc.Scalars(tag)] if tag in acc.Tags()["scalars"] else []
