"""Sentence-level accuracy of joint slot filling and intent detection, as a torchmetrics Metric."""

from __future__ import annotations

import torch
from torchmetrics import Metric


class SentenceAccuracy(Metric):
    """The share of utterances (in percent) whose intent and every slot tag are right.

    The "overall accuracy" of slot-filling papers (e.g. Goo et al., 2018). ``update`` takes
    tag ids ``[B, T]`` (predicted, gold; positions where gold is ``ignore_index`` are padding)
    and intent ids ``[B]``. The states are two summed counts, so the value is exact across
    batches and over DDP processes.
    """

    full_state_update = False
    higher_is_better = True

    def __init__(self, ignore_index: int = 0, **kwargs) -> None:
        super().__init__(**kwargs)
        self.ignore_index = ignore_index
        self.add_state("correct", default=torch.tensor(0, dtype=torch.long), dist_reduce_fx="sum")
        self.add_state("total", default=torch.tensor(0, dtype=torch.long), dist_reduce_fx="sum")

    def update(
        self,
        pred_tags: torch.Tensor,
        gold_tags: torch.Tensor,
        pred_intents: torch.Tensor,
        gold_intents: torch.Tensor,
    ) -> None:
        if pred_tags.shape != gold_tags.shape:
            raise ValueError(f"predicted tags {tuple(pred_tags.shape)} vs gold {gold_tags.shape}")
        if pred_intents.shape != gold_intents.shape or len(gold_intents) != len(gold_tags):
            raise ValueError(
                f"{len(pred_intents)} predicted and {len(gold_intents)} gold intents for "
                f"{len(gold_tags)} utterances"
            )
        wrong_tag = (pred_tags != gold_tags) & (gold_tags != self.ignore_index)
        right = ~wrong_tag.any(dim=1) & (pred_intents == gold_intents)
        self.correct += right.sum()
        self.total += len(right)

    def compute(self) -> torch.Tensor:
        if self.total == 0:
            return torch.tensor(0.0, dtype=torch.float64)
        return 100 * self.correct.double() / self.total
