"""data.unk_singletons: words seen once in train become <unk> in training batches only."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest
import torch

from seqmodels.core.errors import ConfigError
from seqmodels.data.conll import ConllDataModule

FIXTURE = Path(__file__).resolve().parent / "fixtures" / "conll_ner"


def data(p: float) -> ConllDataModule:
    module = ConllDataModule(path=str(FIXTURE), batch_size=64, unk_singletons=p)
    module.setup()
    return module


def train_batch(module: ConllDataModule) -> dict:
    torch.manual_seed(0)
    return next(iter(module.train_dataloader()))


def test_every_singleton_and_nothing_else_becomes_unk_at_p_1() -> None:
    module = data(1.0)
    words = module.vocabs["words"]
    counts = Counter(w for u in module.splits["train"] for w in u.words)
    batch = train_batch(module)
    unk = words.stoi["<unk>"]
    seen = 0
    for ids, tokens in zip(batch["words"], batch["tokens"], strict=True):
        for i, token in zip(ids.tolist(), tokens, strict=False):
            expected = unk if counts[token] == 1 else words.stoi[token]
            assert i == expected, token
            seen += counts[token] == 1
    assert seen > 0  # the fixture has singletons, so the test could fail
    assert (batch["chars"] > 0).any()  # the characters stay


def test_half_of_them_at_p_half_and_none_at_p_0_or_in_evaluation() -> None:
    unk = data(0.0).vocabs["words"].stoi["<unk>"]
    assert not (train_batch(data(0.0))["words"] == unk).any()
    half = data(0.5)
    replaced = int((train_batch(half)["words"] == unk).sum())
    counts = Counter(w for u in half.splits["train"] for w in u.words)
    singletons = sum(1 for u in half.splits["train"] for w in u.words if counts[w] == 1)
    assert 0 < replaced < singletons
    evaluated = next(iter(half.val_dataloader()))["words"]
    assert torch.equal(evaluated, next(iter(data(0.0).val_dataloader()))["words"])


@pytest.mark.parametrize("p", [-0.1, 1.5])
def test_a_probability_outside_0_1_is_refused(p: float) -> None:
    with pytest.raises(ConfigError, match=r"data.unk_singletons must be in \[0, 1\]"):
        ConllDataModule(path=str(FIXTURE), unk_singletons=p)


def test_with_min_freq_2_nothing_is_replaced_and_the_log_says_so(caplog) -> None:
    module = ConllDataModule(path=str(FIXTURE), batch_size=64, unk_singletons=0.5, min_freq=2)
    module.setup()
    with caplog.at_level("WARNING", logger="seqmodels.data.slot_filling"):
        module.train_dataloader()
    assert "data.unk_singletons=0.5 replaces nothing" in caplog.text
    assert "data.min_freq=2" in caplog.text
    caplog.clear()
    with caplog.at_level("WARNING", logger="seqmodels.data.slot_filling"):
        data(0.5).train_dataloader()  # min_freq=1: the fixture's singletons are replaced
    assert "replaces nothing" not in caplog.text
