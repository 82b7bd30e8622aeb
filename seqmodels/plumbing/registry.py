"""The project's own task and data classes, looked up by the names a checkpoint stores.

A checkpoint is a file people download and share. ``torch.load(weights_only=True)`` keeps its
unpickling safe, but the config inside it names ``_target_`` classes, and instantiating those
would let the file choose what code runs (``builtins.open``, ``urllib.request.urlopen``, ...).
Code that rebuilds a model or data from a checkpoint (eval, generate, tag, report) therefore
maps the stored *names* to the classes below and never calls a stored ``_target_``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import lightning as L

from seqmodels.core.checkpoints import init_kwargs, lookup
from seqmodels.data import (
    AnnotatedDataModule,
    CharLMDataModule,
    ConllDataModule,
    HFTaggingDataModule,
    HFTextDataModule,
    LongRangeDataModule,
    SlotFillingDataModule,
)
from seqmodels.tasks import CharLM, LongRange, SlotTagger

__all__ = ["DATA_MODULES", "TASKS", "data_class", "init_kwargs", "task_class"]

TASKS: dict[str, type[L.LightningModule]] = {
    "slot_filling": SlotTagger,
    "char_lm": CharLM,
    "long_range": LongRange,
}
DATA_MODULES: dict[str, type[L.LightningDataModule]] = {
    f"seqmodels.data.{cls.__name__}": cls
    for cls in (SlotFillingDataModule, ConllDataModule, CharLMDataModule, LongRangeDataModule)
}
# Annotated JSON/JSONL and Hugging Face datasets (seqmodels/data/annotated.py, hf.py).
DATA_MODULES |= {
    f"seqmodels.data.{cls.__name__}": cls
    for cls in (AnnotatedDataModule, HFTaggingDataModule, HFTextDataModule)
}


def task_class(checkpoint: Mapping[str, Any], path: Any) -> type[L.LightningModule]:
    """The task module class of a checkpoint, by its ``task.name``."""
    name = (checkpoint.get("config") or {}).get("task", {}).get("name")
    return lookup(TASKS, name, "task", path)


def data_class(data_cfg: Mapping[str, Any], path: Any) -> type[L.LightningDataModule]:
    """The DataModule class a checkpoint's data config names (by the project's own names)."""
    return lookup(DATA_MODULES, data_cfg.get("_target_"), "data module", path)
