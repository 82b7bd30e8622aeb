"""Per-type span scores agree with seqeval; span errors are classified and written readably."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest
from seqeval.metrics import classification_report
from seqeval.metrics.sequence_labeling import get_entities

from seqmodels.data.conll_files import iob2_to_iobes
from seqmodels.metrics import SpanF1
from seqmodels.metrics.span_f1 import span_types
from seqmodels.metrics.span_report import sentence_errors, span_report, write_report

TAGS = ["O", "B-PER", "I-PER", "B-LOC", "I-LOC", "B-ORG", "I-ORG"]


def random_sequences(seed: int, n: int = 60) -> tuple[list[list[str]], list[list[str]]]:
    rng = random.Random(seed)
    golds, preds = [], []
    for _ in range(n):
        length = rng.randint(1, 12)
        gold = [rng.choice(TAGS) for _ in range(length)]
        pred = [t if rng.random() < 0.6 else rng.choice(TAGS) for t in gold]
        golds.append(gold)
        preds.append(pred)
    return golds, preds


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_per_type_scores_match_seqeval_report(seed: int) -> None:
    golds, preds = random_sequences(seed)
    expected = classification_report(golds, preds, output_dict=True, zero_division=0)
    utterances = [
        {"tokens": [f"w{i}" for i in range(len(g))], "gold": g, "predicted": p}
        for g, p in zip(golds, preds)
    ]
    report = span_report(utterances)
    metric = SpanF1(span_types(TAGS))
    metric.update(preds[:30], golds[:30])  # two batches: counts add up exactly
    metric.update(preds[30:], golds[30:])
    for name in ("PER", "LOC", "ORG"):
        for row in (report["per_type"][name], metric.per_type()[name]):
            assert row["precision"] == pytest.approx(100 * expected[name]["precision"])
            assert row["recall"] == pytest.approx(100 * expected[name]["recall"])
            assert row["f1"] == pytest.approx(100 * expected[name]["f1-score"])
            assert row["support"] == expected[name]["support"]
    micro = expected["micro avg"]
    assert report["micro"]["f1"] == pytest.approx(100 * micro["f1-score"])
    assert metric.micro()["f1"] == pytest.approx(float(metric.compute()["f1"]))
    assert metric.micro()["f1"] == pytest.approx(100 * micro["f1-score"])


def test_span_types_of_bio_and_iobes_vocabularies() -> None:
    assert span_types(["<pad>", "<unk>", "O", "B-a", "I-a", "S-b", "E-b", "B-c"]) == ["a", "b", "c"]


def test_each_kind_of_span_error_is_named_with_an_example() -> None:
    tokens = "Paris Hilton met Apple in New York today".split()
    gold = ["B-PER", "I-PER", "O", "B-ORG", "O", "B-LOC", "I-LOC", "O"]
    pred = ["B-LOC", "O", "O", "B-PER", "O", "B-LOC", "O", "B-LOC"]
    errors = {(kind, g, p): ex for kind, g, p, ex in sentence_errors(tokens, gold, pred)}
    assert set(errors) == {
        ("wrong type and boundary", "PER", "LOC"),  # [Paris]LOC vs [Paris Hilton]PER
        ("wrong type", "ORG", "PER"),
        ("wrong boundary", "LOC", "LOC"),  # [New]LOC vs [New York]LOC
        ("spurious", "-", "LOC"),
    }
    example = errors[("wrong type", "ORG", "PER")]
    assert "Hilton met [Apple]ORG in New York | predicted: Paris" in example
    assert example.endswith("met [Apple]PER in New York")
    missed = sentence_errors(tokens, gold, ["O"] * len(tokens))
    assert [(k, g) for k, g, _, _ in missed] == [
        ("missed", "PER"),
        ("missed", "ORG"),
        ("missed", "LOC"),
    ]


def test_report_files_are_readable_text_and_json(tmp_path: Path) -> None:
    utterances = [
        {"tokens": ["New", "York"], "gold": ["B-LOC", "I-LOC"], "predicted": ["B-LOC", "I-LOC"]},
        {"tokens": ["Bob", "ran"], "gold": ["B-PER", "O"], "predicted": ["O", "O"]},
        {"tokens": ["Jo", "ran"], "gold": ["B-PER", "O"], "predicted": ["O", "O"]},
    ]
    path = write_report(tmp_path, span_report(utterances), "span_report", "test")
    text = path.read_text()
    lines = text.splitlines()
    assert lines[0] == "test: 6 tokens, 3 gold spans, 1 predicted, 1 correct"
    assert any(line.split()[:4] == ["LOC", "100.00", "100.00", "100.00"] for line in lines)
    assert any(line.split()[:5] == ["PER", "0.00", "0.00", "0.00", "2"] for line in lines)
    assert "2  missed: gold PER -> predicted -" in text
    assert "         gold: [Bob]PER ran\n" in text  # missed: the gold span only
    saved = json.loads((tmp_path / "span_report.json").read_text())
    assert saved["errors"]["by_kind"]["missed"] == 2
    assert saved["per_type"]["PER"]["support"] == 2
    assert not list(tmp_path.glob(".*"))  # no temporary files left behind


def test_iob2_to_iobes_keeps_the_spans() -> None:
    tags = ["B-PER", "I-PER", "O", "B-LOC", "B-LOC", "I-LOC", "I-LOC", "B-ORG"]
    iobes = iob2_to_iobes(tags)
    assert iobes == ["B-PER", "E-PER", "O", "S-LOC", "B-LOC", "I-LOC", "E-LOC", "S-ORG"]
    assert get_entities(iobes) == get_entities(tags)
