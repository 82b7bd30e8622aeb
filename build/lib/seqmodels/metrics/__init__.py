"""Task metrics that torchmetrics does not ship."""

from seqmodels.metrics.sentence_accuracy import SentenceAccuracy
from seqmodels.metrics.span_f1 import SpanF1, spans

__all__ = ["SentenceAccuracy", "SpanF1", "spans"]
