"""LightningModules, one per task (loss, metrics, optimizers, logging; no layers defined
here); each subclasses its network from :mod:`seqmodels.nets` and drives whichever encoder
``model=`` picks. May import core, data, metrics, layers and nets. Classes load on first use.
"""

from __future__ import annotations

import importlib
from typing import Any

_HOMES = {
    "CausalEncoderRequired": "seqmodels.tasks.char_lm",
    "CharLM": "seqmodels.tasks.char_lm",
    "LongRange": "seqmodels.tasks.long_range",
    "SlotTagger": "seqmodels.tasks.slot_filling",
}
__all__ = list(_HOMES)


def __getattr__(name: str) -> Any:
    if name not in _HOMES:
        raise AttributeError(f"module 'seqmodels.tasks' has no attribute {name!r}")
    return getattr(importlib.import_module(_HOMES[name]), name)
