"""Span (chunk) precision / recall / F1 as conlleval and seqeval's default mode compute them."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torchmetrics import Metric

Span = tuple[str, int, int]  # (type, first token, last token)


def _split(tag: str) -> tuple[str, str]:
    """``'B-city'`` -> ``('B', 'city')``; ``'O'`` -> ``('O', '_')``, as seqeval splits tags."""
    return tag[:1], tag[1:].split("-", maxsplit=1)[-1] or "_"


def _ends(prev_tag: str, tag: str, prev_type: str, type_: str) -> bool:
    """Does a chunk end between the previous token and this one (conlleval's endOfChunk)?"""
    if prev_tag in ("E", "S"):
        return True
    if prev_tag in ("B", "I") and tag in ("B", "S", "O"):
        return True
    return prev_tag not in ("O", ".") and prev_type != type_


def _starts(prev_tag: str, tag: str, prev_type: str, type_: str) -> bool:
    """Does a chunk start at this token (conlleval's startOfChunk)?"""
    if tag in ("B", "S"):
        return True
    if prev_tag in ("E", "S", "O") and tag in ("E", "I"):
        return True
    return tag not in ("O", ".") and prev_type != type_


def spans(tags: Sequence[str]) -> list[Span]:
    """Chunks of one tag sequence; ``I-x`` after ``O`` starts a chunk, as in conlleval."""
    found: list[Span] = []
    prev_tag, prev_type, begin = "O", "", 0
    for i, chunk in enumerate([*tags, "O"]):
        tag, type_ = _split(chunk)
        if _ends(prev_tag, tag, prev_type, type_):
            found.append((prev_type, begin, i - 1))
        if _starts(prev_tag, tag, prev_type, type_):
            begin = i
        prev_tag, prev_type = tag, type_
    return found


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
