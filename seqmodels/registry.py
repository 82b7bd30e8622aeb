"""The project's own task and data classes, looked up by the names a checkpoint stores.

A checkpoint is a file people download and share. ``torch.load(weights_only=True)`` keeps its
unpickling safe, but the config inside it names ``_target_`` classes, and instantiating those
would let the file choose what code runs (``builtins.open``, ``urllib.request.urlopen``, ...).
Code that rebuilds a model or data from a checkpoint (eval, generate, tag, report) therefore
maps the stored *names* to the classes below and never calls a stored ``_target_``.
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping
from typing import Any

import lightning as L

from seqmodels.data import (
    CharLMDataModule,
    ConllDataModule,
    LongRangeDataModule,
    SlotFillingDataModule,
)
from seqmodels.errors import CheckpointError
from seqmodels.tasks import CharLM, LongRange, SlotTagger

TASKS: dict[str, type[L.LightningModule]] = {
    "slot_filling": SlotTagger,
    "char_lm": CharLM,
    "long_range": LongRange,
}
DATA_MODULES: dict[str, type[L.LightningDataModule]] = {
    f"seqmodels.data.{cls.__name__}": cls
    for cls in (SlotFillingDataModule, ConllDataModule, CharLMDataModule, LongRangeDataModule)
}


def _lookup(table: Mapping[str, type], name: Any, what: str, path: Any) -> type:
    if not isinstance(name, str) or name not in table:
        raise CheckpointError(
            f"{path} names {what} {name!r}, which is not one of seqmodels' own "
            f"({', '.join(table)}); it was not written by this version of seqmodels' train()"
        )
    return table[name]


# Optimizer and scheduler configs name torch classes by ``_target_``; they are built only when
# training (configure_optimizers), which loading a checkpoint for inference never does.
TRAINING_ONLY = ("optimizer", "scheduler")


def init_kwargs(cls: type, values: Mapping[str, Any]) -> dict[str, Any]:
    """The entries of ``values`` that ``cls.__init__`` takes by name (``_target_`` dropped).

    Refuses a ``_target_`` nested anywhere else: the model, data and vocabulary options a
    checkpoint holds are plain values and never ask for objects.
    """
    accepted = inspect.signature(cls.__init__).parameters
    kwargs = {k: v for k, v in values.items() if k in accepted and k != "self"}
    checked = {k: v for k, v in kwargs.items() if k not in TRAINING_ONLY}
    if "_target_" in _all_keys(checked):
        raise CheckpointError(
            f"the {cls.__name__} options in this checkpoint name a class (_target_) where "
            "seqmodels stores plain values; refusing to load it"
        )
    return kwargs


def _all_keys(tree: Any) -> list[str]:
    """Every key of the dicts nested in ``tree`` (dicts and lists), its own keys excepted."""
    if isinstance(tree, Mapping):
        children = list(tree.values())
    elif isinstance(tree, list | tuple):
        children = list(tree)
    else:
        return []
    keys: list[str] = []
    for child in children:
        if isinstance(child, Mapping):
            keys += [str(k) for k in child]
        keys += _all_keys(child)
    return keys


def task_class(checkpoint: Mapping[str, Any], path: Any) -> type[L.LightningModule]:
    """The task module class of a checkpoint, by its ``task.name``."""
    name = (checkpoint.get("config") or {}).get("task", {}).get("name")
    return _lookup(TASKS, name, "task", path)


def data_class(data_cfg: Mapping[str, Any], path: Any) -> type[L.LightningDataModule]:
    """The DataModule class a checkpoint's data config names (by the project's own names)."""
    return _lookup(DATA_MODULES, data_cfg.get("_target_"), "data module", path)
