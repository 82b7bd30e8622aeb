"""Span (chunk) precision / recall / F1 as a torchmetrics Metric, with seqeval's chunking."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from seqeval.metrics.sequence_labeling import get_entities
from torchmetrics import Metric

Span = tuple[str, int, int]  # (type, first token, last token)


def spans(tags: Sequence[str]) -> list[Span]:
    """Chunks of one tag sequence by seqeval's (conlleval's) rules; ``O I-x`` opens a chunk."""
    return get_entities(list(tags))


class SpanF1(Metric):
    """Micro span P/R/F1 (in percent) from summed counts, so it is exact across batches and ranks.

    ``update(preds, golds)`` takes lists of tag-string sequences.
    """

    full_state_update = False
    higher_is_better = True

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        for name in ("correct", "predicted", "gold"):
            self.add_state(name, default=torch.tensor(0, dtype=torch.long), dist_reduce_fx="sum")

    def update(self, preds: Sequence[Sequence[str]], golds: Sequence[Sequence[str]]) -> None:
        if len(preds) != len(golds):
            raise ValueError(f"{len(preds)} predicted sequences for {len(golds)} gold ones")
        for pred, gold in zip(preds, golds):
            if len(pred) != len(gold):
                raise ValueError(f"{len(pred)} predicted tags for {len(gold)} gold tags")
            pred_spans, gold_spans = set(spans(pred)), set(spans(gold))
            self.correct += len(pred_spans & gold_spans)
            self.predicted += len(pred_spans)
            self.gold += len(gold_spans)

    def compute(self) -> dict[str, torch.Tensor]:
        correct = self.correct.double()
        precision = correct / self.predicted if self.predicted > 0 else correct * 0
        recall = correct / self.gold if self.gold > 0 else correct * 0
        denom = precision + recall
        f1 = 2 * precision * recall / denom if denom > 0 else denom * 0
        return {"precision": 100 * precision, "recall": 100 * recall, "f1": 100 * f1}
