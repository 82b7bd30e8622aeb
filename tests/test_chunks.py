"""Tagging's own chunker agrees with seqeval's on every sequence drawn."""

from __future__ import annotations

import random

from seqeval.metrics.sequence_labeling import get_entities

from seqmodels.data.chunks import chunks

LABELS = ["O", "B-a", "I-a", "E-a", "S-a", "B-b", "I-b", "E-b", "S-b", "I-c", "B-long-name"]


def test_chunks_match_seqeval_on_random_sequences() -> None:
    rng = random.Random(0)
    for _ in range(3000):
        tags = [rng.choice(LABELS) for _ in range(rng.randint(0, 12))]
        assert chunks(tags) == get_entities(tags), tags


def test_chunks_of_a_typical_sentence() -> None:
    tags = ["O", "B-fromloc", "I-fromloc", "O", "I-toloc", "B-date", "B-date"]
    assert chunks(tags) == [("fromloc", 1, 2), ("toloc", 4, 4), ("date", 5, 5), ("date", 6, 6)]
