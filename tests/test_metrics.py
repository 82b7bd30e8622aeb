"""Span F1 equals seqeval's (conlleval) on random tag sequences and on real ATIS predictions."""

from __future__ import annotations

import random
from pathlib import Path

import pytest
import torch
from conftest import requires_data
from seqeval.metrics import f1_score, precision_score, recall_score
from seqeval.metrics.sequence_labeling import get_entities

from seqmodels.metrics import SpanF1, spans
from seqmodels.tasks import SlotTagger
from seqmodels.train import train

ODD_TAGS = ["O", "B-a", "I-a", "B-b", "I-b", "E-a", "S-b", "I-c", "B-a.b", "I-a-b", "<unk>"]


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_spans_equal_seqeval_on_random_sequences() -> None:
    rng = random.Random(0)
    for _ in range(5000):
        tags = [rng.choice(ODD_TAGS) for _ in range(rng.randint(0, 10))]
        assert sorted(spans(tags)) == sorted(get_entities(tags)), tags


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_micro_scores_equal_seqeval_over_several_updates() -> None:
    rng = random.Random(1)
    golds = [[rng.choice(ODD_TAGS[:5]) for _ in range(rng.randint(1, 12))] for _ in range(300)]
    preds = [[t if rng.random() < 0.8 else rng.choice(ODD_TAGS) for t in g] for g in golds]
    metric = SpanF1()
    for start in range(0, 300, 37):  # uneven batches
        metric.update(preds[start : start + 37], golds[start : start + 37])
    scores = metric.compute()
    assert scores["f1"].item() == pytest.approx(100 * f1_score(golds, preds), abs=1e-9)
    assert scores["precision"].item() == pytest.approx(100 * precision_score(golds, preds))
    assert scores["recall"].item() == pytest.approx(100 * recall_score(golds, preds))


def test_i_after_o_starts_a_chunk_as_in_conlleval() -> None:
    assert spans(["O", "I-city", "I-city", "B-date"]) == [("city", 1, 2), ("date", 3, 3)]


def test_no_spans_gives_zero_not_nan() -> None:
    metric = SpanF1()
    metric.update([["O", "O"]], [["O", "O"]])
    assert metric.compute()["f1"].item() == 0.0


@requires_data
def test_reported_test_f1_equals_seqeval_on_real_atis_predictions(cfg_factory, tmp_path: Path):
    metrics = train(
        cfg_factory("model=lstm", "trainer.max_epochs=2", "trainer.limit_test_batches=1.0")
    )
    (best,) = (tmp_path / "checkpoints").glob("epoch_*.ckpt")
    checkpoint = torch.load(best, weights_only=True)
    module = SlotTagger(**checkpoint["hyper_parameters"]).eval()
    module.load_state_dict(checkpoint["state_dict"])

    from seqmodels.data import SlotFillingDataModule

    data = SlotFillingDataModule(
        data_dir=str(cfg_factory().paths.data_dir),
        download=False,
        vocabs=checkpoint["hyper_parameters"]["vocabs"],
    )
    data.setup()
    golds, preds = [], []
    with torch.no_grad():
        for batch in data.test_dataloader():
            tag_logits, _ = module(batch["words"], batch["lengths"])
            preds += module.decode(module.predict_tags(tag_logits), batch["lengths"])
            golds += batch["gold_tags"]
    assert len(golds) == 893
    assert metrics["test/f1"] == pytest.approx(100 * f1_score(golds, preds), abs=1e-4)
    assert metrics["test/f1"] > 0  # a real, partly trained model, not an empty prediction
