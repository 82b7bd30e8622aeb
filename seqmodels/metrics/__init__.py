"""Task metrics that torchmetrics does not ship."""

from seqmodels.metrics.span_f1 import SpanF1, spans

__all__ = ["SpanF1", "spans"]
