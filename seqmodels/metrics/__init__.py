"""Task metrics that torchmetrics does not ship: span F1 with per-type reports, sentence
accuracy. Imports :mod:`seqmodels.core` only. The classes load on first use."""

from __future__ import annotations

import importlib
from typing import Any

_HOMES = {
    "SentenceAccuracy": "seqmodels.metrics.sentence_accuracy",
    "SpanF1": "seqmodels.metrics.span_f1",
    "spans": "seqmodels.metrics.span_f1",
}
__all__ = list(_HOMES)


def __getattr__(name: str) -> Any:
    if name not in _HOMES:
        raise AttributeError(f"module 'seqmodels.metrics' has no attribute {name!r}")
    return getattr(importlib.import_module(_HOMES[name]), name)
