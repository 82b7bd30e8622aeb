"""Span F1 equals seqeval's (conlleval) on random tag sequences and on real ATIS predictions;
sentence accuracy on hand-made cases, over two processes, and on real ATIS predictions."""

from __future__ import annotations

import random
from pathlib import Path

import pytest
import torch
from conftest import requires_data
from seqeval.metrics import f1_score, precision_score, recall_score

from seqmodels.commands.train import train
from seqmodels.metrics import SentenceAccuracy, SpanF1, spans
from seqmodels.tasks import SlotTagger

ODD_TAGS = ["O", "B-a", "I-a", "B-b", "I-b", "E-a", "S-b", "I-c", "B-a.b", "I-a-b", "<unk>"]


BIO_TAGS = ["O", "B-a", "I-a", "B-b", "I-b", "I-c", "B-a.b", "I-a-b"]


def reference_chunks(tags: list[str]) -> list[tuple[str, int, int]]:
    """Chunks of BIO tags written from conlleval's definition, independently of seqeval: a
    chunk starts at ``B-x``, or at ``I-x`` unless the token before is inside an ``x`` chunk;
    it goes on over ``I-x`` and ends before anything else."""
    chunks: list[tuple[str, int, int]] = []
    open_type, open_start = None, 0
    for i, tag in enumerate(tags):
        prefix, kind = ("O", None) if tag == "O" else tag.split("-", 1)
        continues = open_type is not None and prefix == "I" and kind == open_type
        if open_type is not None and not continues:
            chunks.append((open_type, open_start, i - 1))
            open_type = None
        if prefix in ("B", "I") and not continues:
            open_type, open_start = kind, i
    if open_type is not None:
        chunks.append((open_type, open_start, len(tags) - 1))
    return chunks


def test_reference_chunks_on_hand_made_cases() -> None:
    assert reference_chunks(["B-a", "I-a", "O", "I-b", "B-b", "I-a"]) == [
        ("a", 0, 1),
        ("b", 3, 3),
        ("b", 4, 4),
        ("a", 5, 5),
    ]


def test_spans_equal_an_independent_bio_chunker_on_random_sequences() -> None:
    rng = random.Random(0)
    for _ in range(5000):
        tags = [rng.choice(BIO_TAGS) for _ in range(rng.randint(0, 10))]
        assert sorted(spans(tags)) == sorted(reference_chunks(tags)), tags


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_spans_handle_odd_tags_without_error() -> None:
    """IOBES prefixes and <unk> (an unseen label) are chunked by seqeval's rules, never fail."""
    rng = random.Random(0)
    for _ in range(500):
        tags = [rng.choice(ODD_TAGS) for _ in range(rng.randint(0, 10))]
        assert all(start <= end < len(tags) for _, start, end in spans(tags))


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


def test_micro_scores_equal_counts_of_the_independent_chunker() -> None:
    rng = random.Random(2)
    golds = [[rng.choice(BIO_TAGS) for _ in range(rng.randint(1, 12))] for _ in range(300)]
    preds = [[t if rng.random() < 0.8 else rng.choice(BIO_TAGS) for t in g] for g in golds]
    metric = SpanF1()
    for start in range(0, 300, 37):  # uneven batches
        metric.update(preds[start : start + 37], golds[start : start + 37])
    pred_chunks = [set(reference_chunks(p)) for p in preds]
    gold_chunks = [set(reference_chunks(g)) for g in golds]
    correct = sum(len(p & g) for p, g in zip(pred_chunks, gold_chunks))
    precision = correct / sum(map(len, pred_chunks))
    recall = correct / sum(map(len, gold_chunks))
    scores = metric.compute()
    assert scores["precision"].item() == pytest.approx(100 * precision, abs=1e-9)
    assert scores["recall"].item() == pytest.approx(100 * recall, abs=1e-9)
    f1 = 2 * precision * recall / (precision + recall)
    assert scores["f1"].item() == pytest.approx(100 * f1, abs=1e-9)


def test_i_after_o_starts_a_chunk_as_in_conlleval() -> None:
    assert spans(["O", "I-city", "I-city", "B-date"]) == [("city", 1, 2), ("date", 3, 3)]


def test_no_spans_gives_zero_not_nan() -> None:
    metric = SpanF1()
    metric.update([["O", "O"]], [["O", "O"]])
    assert metric.compute()["f1"].item() == 0.0


@requires_data
def test_reported_test_f1_equals_seqeval_on_real_atis_predictions(cfg_factory, tmp_path: Path):
    metrics = train(
        cfg_factory(
            "model=lstm",
            "trainer.max_epochs=2",
            "trainer.limit_train_batches=1.0",  # a whole epoch: some sentences come out all right
            "model.hidden_size=32",
            "trainer.limit_test_batches=1.0",
        )
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
    golds, preds, sentences_right = [], [], 0
    with torch.no_grad():
        for batch in data.test_dataloader():
            tag_logits, intent_logits = module(batch["words"], batch["lengths"])
            batch_preds = module.decode(module.predict_tags(tag_logits), batch["lengths"])
            intents = module.predict_intents(intent_logits)
            for pred, gold, intent, gold_intent in zip(
                batch_preds, batch["gold_tags"], intents.tolist(), batch["intents"].tolist()
            ):  # by tag strings: a gold tag never seen in train is always wrong
                sentences_right += pred == gold and intent == gold_intent
            preds += batch_preds
            golds += batch["gold_tags"]
    assert len(golds) == 893
    assert metrics["test/f1"] == pytest.approx(100 * f1_score(golds, preds), abs=1e-4)
    assert metrics["test/f1"] > 0  # a real, partly trained model, not an empty prediction
    assert metrics["test/sent_acc"] == pytest.approx(100 * sentences_right / 893, abs=1e-4)
    assert 0 < metrics["test/sent_acc"] <= metrics["test/intent_acc"]


# --- sentence accuracy ----------------------------------------------------------------------


@pytest.mark.filterwarnings("ignore:.*called before the ``update`` method")
def test_sentence_accuracy_on_hand_made_cases() -> None:
    gold = torch.tensor([[3, 4, 5], [3, 3, 0], [6, 0, 0], [4, 5, 6]])  # 0 = padding
    pred = torch.tensor([[3, 4, 5], [3, 3, 7], [6, 2, 2], [4, 5, 7]])  # padding ignored
    metric = SentenceAccuracy()
    metric.update(pred, gold, torch.tensor([1, 2, 1, 1]), torch.tensor([1, 2, 2, 1]))
    # 0: all right; 1: right (a wrong tag on padding); 2: wrong intent; 3: one wrong tag
    assert metric.compute().item() == pytest.approx(50.0)
    metric.update(pred[:1], gold[:1], torch.tensor([0]), torch.tensor([0]))  # one more right
    assert metric.compute().item() == pytest.approx(60.0)
    metric.reset()
    assert metric.compute().item() == 0.0  # nothing seen: 0, not nan


def random_batches(seed: int, count: int) -> list[tuple[torch.Tensor, ...]]:
    """Uneven batches of padded tag ids and intents, most sentences right, some not."""
    gen = torch.Generator().manual_seed(seed)
    batches = []
    for _ in range(count):
        size, length = int(torch.randint(1, 9, (1,), generator=gen)), 6
        gold = torch.randint(1, 5, (size, length), generator=gen)
        lengths = torch.randint(1, length + 1, (size,), generator=gen)
        gold[torch.arange(length) >= lengths[:, None]] = 0
        pred = torch.where(torch.rand(size, length, generator=gen) < 0.05, 1, gold)
        gold_intent = torch.randint(0, 3, (size,), generator=gen)
        pred_intent = torch.where(torch.rand(size, generator=gen) < 0.1, 0, gold_intent)
        batches.append((pred, gold, pred_intent, gold_intent))
    return batches


def _ddp_worker(rank: int, port: int, results) -> None:
    torch.distributed.init_process_group(
        "gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=2
    )
    metric = SentenceAccuracy()
    for batch in random_batches(0, 25)[rank::2]:  # each process sees every other batch
        metric.update(*batch)
    results[rank] = metric.compute().item()  # synced over both processes
    torch.distributed.destroy_process_group()


def test_sentence_accuracy_over_two_processes_equals_one_process() -> None:
    import socket

    import torch.multiprocessing as mp

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    results = mp.Manager().dict()
    mp.spawn(_ddp_worker, args=(port, results), nprocs=2, join=True)
    single = SentenceAccuracy()
    for batch in random_batches(0, 25):
        single.update(*batch)
    expected = single.compute().item()
    assert 0 < expected < 100
    assert results[0] == results[1] == pytest.approx(expected, abs=1e-9)
