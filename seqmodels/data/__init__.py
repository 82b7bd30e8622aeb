"""Datasets: pinned downloads, readers per format, vocabularies, token files and one
DataModule per task. Imports :mod:`seqmodels.core` only.

Imported on first use, so that the plain helpers beside them (vocabularies, tokenising typed
text, character ids), which inference reads, load without Lightning.
"""

from __future__ import annotations

import importlib
from typing import Any

_HOMES = {
    "AnnotatedDataModule": "seqmodels.data.annotated",
    "HFTaggingDataModule": "seqmodels.data.hf",
    "HFTextDataModule": "seqmodels.data.hf",
    "CharLMDataModule": "seqmodels.data.char_lm",
    "ConllDataModule": "seqmodels.data.conll",
    "DatasetError": "seqmodels.data.download",
    "SlotFillingDataModule": "seqmodels.data.slot_filling",
    "Vocab": "seqmodels.data.vocab",
    "ensure_dataset": "seqmodels.data.download",
    "LongRangeDataModule": "seqmodels.data.long_range",
}
__all__ = list(_HOMES)


def __getattr__(name: str) -> Any:
    if name not in _HOMES:
        raise AttributeError(f"module 'seqmodels.data' has no attribute {name!r}")
    return getattr(importlib.import_module(_HOMES[name]), name)
