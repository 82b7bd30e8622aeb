"""task.module.loss_reduction: a step on the loss per token (default) or summed over the batch."""

from __future__ import annotations

import pytest
import torch
from torch.nn import functional as F

from seqmodels.core.errors import ConfigError
from seqmodels.tasks import SlotTagger

VOCABS = {
    "words": ["<pad>", "<unk>", *"abcdefg"],
    "tags": ["<pad>", "O", "B-x", "I-x"],
    "intents": ["<unk>", "a", "b"],
}
MODEL = {"cell": "lstm", "embedding_dim": 6, "hidden_size": 7, "dropout": 0.0}
OPTIMIZER = {"_target_": "torch.optim.SGD", "lr": 0.1}


def _gradients(loss_reduction: str, intent_loss_weight: float) -> tuple[list[torch.Tensor], int]:
    torch.manual_seed(0)
    module = SlotTagger(
        vocabs=VOCABS,
        model=MODEL,
        optimizer=OPTIMIZER,
        decoder="crf",
        intent_loss_weight=intent_loss_weight,
        loss_reduction=loss_reduction,
    ).double()
    lengths = torch.tensor([6, 2, 5])
    steps = torch.arange(6)
    generator = torch.Generator().manual_seed(1)
    words = torch.randint(2, 9, (3, 6), generator=generator) * (steps < lengths[:, None])
    tags = torch.randint(1, 4, (3, 6), generator=generator) * (steps < lengths[:, None])
    batch = {
        "words": words,
        "lengths": lengths,
        "tags": tags,
        "intents": torch.tensor([1, 2, 1]),
        "gold_tags": [["O"] * int(n) for n in lengths],
    }
    logged = {}
    module.log = lambda name, value, **kwargs: logged.update({name: float(value)})
    module._step(batch, "train").backward()
    tag_total, counted = module.tag_loss_sum(*_scores_and_tags(module, batch))
    intent = module.intent_loss_weight * F.cross_entropy(
        module(batch["words"], batch["lengths"])[1], batch["intents"]
    )
    # the logged loss is per token (and per sentence for the intents) whichever is stepped on
    assert logged["train/loss"] == pytest.approx(float(tag_total / counted + intent), rel=1e-9)
    return [p.grad.clone() for p in module.parameters() if p.grad is not None], int(lengths.sum())


def _scores_and_tags(module: SlotTagger, batch: dict) -> tuple[torch.Tensor, torch.Tensor]:
    return module(batch["words"], batch["lengths"])[0], batch["tags"]


def test_sum_steps_on_the_batchs_summed_loss() -> None:
    per_token, tokens = _gradients("token", intent_loss_weight=0.0)
    summed, _ = _gradients("sum", intent_loss_weight=0.0)
    assert tokens == 13 and len(summed) == len(per_token) > 4
    for got, want in zip(summed, per_token):
        torch.testing.assert_close(got, want * tokens, rtol=1e-10, atol=1e-12)


def test_sum_adds_the_intent_loss_summed_over_sentences() -> None:
    """With sentence labels, ``sum`` differentiates tag loss + intent loss, both summed: the
    intent part of its gradient is the sentence count (3) times the per-token variant's."""
    grads = {
        (reduction, weight): _gradients(reduction, intent_loss_weight=weight)[0]
        for reduction in ("token", "sum")
        for weight in (0.0, 1.0)
    }
    for k in range(len(grads["sum", 0.0])):
        intent_sum = grads["sum", 1.0][k] - grads["sum", 0.0][k]
        intent_token = grads["token", 1.0][k] - grads["token", 0.0][k]
        torch.testing.assert_close(intent_sum, 3 * intent_token, rtol=1e-8, atol=1e-12)
    assert any(
        g.abs().max() > 1e-6 for g in (a - b for a, b in zip(grads["sum", 1.0], grads["sum", 0.0]))
    )


def test_an_unknown_reduction_is_refused_by_name() -> None:
    with pytest.raises(ConfigError, match="task.module.loss_reduction must be one of token, sum"):
        SlotTagger(vocabs=VOCABS, model=MODEL, optimizer=OPTIMIZER, loss_reduction="mean")
