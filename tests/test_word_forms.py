"""data.lowercase_words / data.zero_digits: the word vocabulary's form, kept by the checkpoint."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from test_eval import eval_cfg

from seqmodels.commands.evaluate import evaluate
from seqmodels.commands.tag import Tagger
from seqmodels.commands.train import train
from seqmodels.core.errors import ConfigError
from seqmodels.data.conll import ConllDataModule
from seqmodels.data.word_forms import check_word_forms, word_form
from seqmodels.nets import load_net

FIXTURE = Path(__file__).resolve().parent / "fixtures" / "conll_ner"


def data(**switches: bool) -> ConllDataModule:
    module = ConllDataModule(path=str(FIXTURE), **switches)
    module.setup()
    return module


def test_word_form() -> None:
    assert word_form("Route 66", ["lower", "zero_digits"]) == "route 00"
    assert word_form("Route 66", ["zero_digits"]) == "Route 00"
    assert word_form("Route 66", []) == "Route 66"
    assert check_word_forms(["zero_digits", "lower"]) == ["lower", "zero_digits"]
    with pytest.raises(ConfigError, match="unknown word form.*'upper'.*known: lower, zero_digits"):
        check_word_forms(["upper"])


def test_vocabulary_holds_the_forms_and_chars_stay_as_written() -> None:
    plain, formed = data(), data(lowercase_words=True, zero_digits=True)
    words = formed.vocabs["words"]
    assert "German" in plain.vocabs["words"] and "German" not in words and "german" in words
    assert "0000-00-00" in words and "1996-08-22" in plain.vocabs["words"]
    assert len(words) < len(plain.vocabs["words"])  # "The" and "the" share a row
    assert "G" in formed.vocabs["chars"]  # char features still see the capital
    batch = next(iter(formed.val_dataloader()))
    first = batch["tokens"][0]
    ids = batch["words"][0, : len(first)].tolist()
    assert ids == [words.stoi.get(word_form(w, formed.word_forms), 1) for w in first]
    assert formed.vocab_kwargs()["vocabs"]["word_forms"] == ["lower", "zero_digits"]
    assert "word_forms" not in plain.vocab_kwargs()["vocabs"]  # old checkpoints look the same


def test_the_checkpoints_forms_win_over_the_switches() -> None:
    saved = data(lowercase_words=True).vocab_kwargs()
    reloaded = ConllDataModule(path=str(FIXTURE), **saved)  # switches off, as in eval's config
    reloaded.setup()
    assert reloaded.word_forms == ["lower"]
    assert reloaded.vocabs["words"].itos == saved["vocabs"]["words"]


def test_tagger_and_eval_look_words_up_as_training_did(
    cfg_factory, tmp_path: Path, one_thread
) -> None:
    cfg = cfg_factory(
        "data=conll",
        f"data.path={FIXTURE}",
        "data.lowercase_words=true",
        "data.zero_digits=true",
        "model.char_features=cnn",
        "task.module.decoder=crf",
        "trainer.max_epochs=2",
        "logger=none",
    )
    metrics = train(cfg)
    best = next((tmp_path / "checkpoints").glob("epoch_*.ckpt"))
    vocabs = torch.load(best, weights_only=True)["hyper_parameters"]["vocabs"]
    assert vocabs["word_forms"] == ["lower", "zero_digits"]
    evaluated = evaluate(eval_cfg(best, tmp_path / "eval"))
    assert evaluated["test/f1"] == pytest.approx(metrics["test/f1"], rel=1e-5)

    module, checkpoint = load_net(best, data_kind="slot_filling")
    tagger = Tagger(module, checkpoint["hyper_parameters"]["vocabs"])
    tokens = [t.text for t in tagger.tokenizer("EU rejects German call on 1996-08-22")]
    assert tokens[:3] == ["EU", "rejects", "German"]  # as typed: the chars keep the capitals
    seen: list[torch.Tensor] = []
    tagger.module.register_forward_pre_hook(lambda _, args: seen.append(args[0]))
    assert len(tagger("EU rejects German call on 1996-08-22")["tags"]) == len(tokens)
    words = tagger.words
    expected = [words.stoi[w] for w in ("eu", "rejects", "german", "call", "on", "0000-00-00")]
    assert seen[0][0].tolist() == expected
    # format=table flags a token <unk> only when its lookup form is not in the vocabulary.
    table = tagger.table(tagger("EU rejects German call on 1996-08-22 Zqxvbw"))
    flagged = [line.split()[0] for line in table.splitlines() if "<unk>" in line]
    assert flagged == ["Zqxvbw"], table
