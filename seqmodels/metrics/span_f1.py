"""Span (chunk) precision / recall / F1 as a torchmetrics Metric, with seqeval's chunking."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from seqeval.metrics.sequence_labeling import get_entities
from torchmetrics import Metric

from seqmodels.metrics.span_report import scores

Span = tuple[str, int, int]  # (type, first token, last token)


def spans(tags: Sequence[str]) -> list[Span]:
    """Chunks of one tag sequence by seqeval's (conlleval's) rules; ``O I-x`` opens a chunk."""
    return get_entities(list(tags))


def span_types(tags: Sequence[str]) -> list[str]:
    """The span types a tag vocabulary can produce (``B-PER``, ``S-PER`` -> ``PER``), sorted."""
    return sorted({t[2:] for t in tags if len(t) > 2 and t[1] == "-" and t[0] in "BIESLU"})


class SpanF1(Metric):
    """Micro span P/R/F1 (in percent) from summed counts, so it is exact across batches and ranks.

    ``update(preds, golds)`` takes lists of tag-string sequences. With ``types`` (the span types
    to count separately, e.g. :func:`span_types` of the tag vocabulary), :meth:`per_type` gives
    each type's precision, recall, F1 and support; spans of other types count in the micro
    average only.
    """

    full_state_update = False
    higher_is_better = True

    def __init__(self, types: Sequence[str] = (), **kwargs) -> None:
        super().__init__(**kwargs)
        self.types = list(types)
        self.type_index = {t: i for i, t in enumerate(self.types)}
        for name in ("correct", "predicted", "gold"):
            self.add_state(name, default=torch.tensor(0, dtype=torch.long), dist_reduce_fx="sum")
            self.add_state(
                f"{name}_per_type",
                default=torch.zeros(len(self.types), dtype=torch.long),
                dist_reduce_fx="sum",
            )

    def _count(self, counts: torch.Tensor, found: set[Span]) -> None:
        for kind, _, _ in found:
            if (i := self.type_index.get(kind)) is not None:
                counts[i] += 1

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
            if self.types:
                self._count(self.correct_per_type, pred_spans & gold_spans)
                self._count(self.predicted_per_type, pred_spans)
                self._count(self.gold_per_type, gold_spans)

    def compute(self) -> dict[str, torch.Tensor]:
        correct = self.correct.double()
        precision = correct / self.predicted if self.predicted > 0 else correct * 0
        recall = correct / self.gold if self.gold > 0 else correct * 0
        denom = precision + recall
        f1 = 2 * precision * recall / denom if denom > 0 else denom * 0
        return {"precision": 100 * precision, "recall": 100 * recall, "f1": 100 * f1}

    def per_type(self) -> dict[str, dict[str, float | int]]:
        """Per type: precision, recall, F1 (percent), support, predicted and correct counts
        (types that are neither in the gold nor the predicted spans are left out)."""
        rows = zip(
            self.types,
            self.correct_per_type.tolist(),
            self.predicted_per_type.tolist(),
            self.gold_per_type.tolist(),
        )
        return {t: scores(c, p, g) for t, c, p, g in rows if p or g}

    def micro(self) -> dict[str, float | int]:
        """The micro average with its counts, in :meth:`per_type`'s form."""
        return scores(int(self.correct), int(self.predicted), int(self.gold))
