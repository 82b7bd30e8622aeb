"""train() with a CRF output layer, char features and CoNLL data; eval from the checkpoint alone."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from conftest import requires_data
from test_eval import eval_cfg, read_conll

from seqmodels.commands.evaluate import evaluate
from seqmodels.commands.train import train
from seqmodels.core.errors import ConfigError

FIXTURE = Path(__file__).resolve().parent / "fixtures" / "conll_ner"


def valid_bio(seq: list[str]) -> bool:
    prev = "O"
    for tag in seq:
        if tag.startswith("I-") and prev[2:] != tag[2:]:
            return False
        prev = tag
    return True


@requires_data
@pytest.mark.parametrize("chars", ["cnn", "lstm"])
def test_atis_crf_and_char_features_train_and_evaluate_from_checkpoint(
    cfg_factory, tmp_path: Path, one_thread, chars: str
) -> None:
    cfg = cfg_factory(
        "task.module.decoder=crf",
        f"model.char_features={chars}",
        "model.char_dim=8",
        "model.char_size=8",
        "model.word_dropout=0.1",
        "model.intent_to_slot=true",
        "model.self_attention=2",
        "+trainer.limit_predict_batches=2",
        "logger=none",
    )
    metrics = train(cfg)
    assert 0 <= metrics["test/f1"] <= 100 and metrics["test/loss"] > 0
    (best,) = (tmp_path / "checkpoints").glob("epoch_*.ckpt")
    hparams = torch.load(best, weights_only=True)["hyper_parameters"]
    assert hparams["decoder"] == "crf"
    chars_vocab = hparams["vocabs"]["chars"]
    assert type(chars_vocab) is list and chars_vocab[:2] == ["<pad>", "<unk>"]
    assert all(type(c) is str and len(c) == 1 for c in chars_vocab[2:])
    state = torch.load(best, weights_only=True)["state_dict"]
    assert "crf.transitions" in state and "attend.attention.in_proj_weight" in state

    out = tmp_path / "eval"
    evaluated = evaluate(eval_cfg(best, out, "+trainer.limit_test_batches=2"))
    assert evaluated["test/f1"] == pytest.approx(metrics["test/f1"], rel=1e-5)
    _, preds, tokens = read_conll(out / "predictions.conll")
    assert tokens > 0 and all(valid_bio(p) for p in preds)


def test_conll_folder_trains_with_crf_and_evaluates(cfg_factory, tmp_path: Path, one_thread):
    cfg = cfg_factory(
        "data=conll",
        f"data.path={FIXTURE}",
        "data.batch_size=2",
        "task.module.decoder=crf",
        "model.char_features=cnn",
        "trainer.max_epochs=2",
        "logger=none",
    )
    metrics = train(cfg)
    # No sentence labels: no intent accuracy (it would read 100); sentences all right still count.
    assert "test/intent_acc" not in metrics
    assert 0 <= metrics["test/sent_acc"] <= 100 and metrics["test/token_acc"] > 0
    best = next((tmp_path / "checkpoints").glob("epoch_*.ckpt"))
    out = tmp_path / "eval"
    evaluated = evaluate(eval_cfg(best, out))
    assert evaluated["test/f1"] == pytest.approx(metrics["test/f1"], rel=1e-5)
    golds, preds, tokens = read_conll(out / "predictions.conll")
    assert tokens == 20 and golds[0][:4] == ["O", "O", "B-LOC", "O"]
    assert all(valid_bio(p) for p in preds)


def test_conll_iob1_and_iobes_folders(cfg_factory, tmp_path: Path, one_thread) -> None:
    """IOB1 files train as IOB2; IOBES files get IOBES decoding constraints."""
    for scheme, tags in (("IOB1", "I-a I-a B-a O"), ("IOBES", "B-a E-a S-a O")):
        folder = tmp_path / scheme
        folder.mkdir()
        text = "\n".join(f"w{i} {t}" for i, t in enumerate(tags.split())) + "\n\n"
        for name in ("train.txt", "valid.txt", "test.txt"):
            (folder / name).write_text(text * 3)
        cfg = cfg_factory(
            "data=conll",
            f"data.path={folder}",
            f"data.scheme={scheme}",
            "task.module.decoder=crf",
            "logger=none",
            f"paths.output_dir={tmp_path / ('run_' + scheme)}",
        )
        train(cfg)
        ckpt = next((tmp_path / ("run_" + scheme) / "checkpoints").glob("epoch_*.ckpt"))
        tag_names = torch.load(ckpt, weights_only=True)["hyper_parameters"]["vocabs"]["tags"]
        expected = {"IOB1": {"B-a", "I-a", "O"}, "IOBES": {"B-a", "E-a", "S-a", "O"}}[scheme]
        assert set(tag_names) - {"<pad>", "<unk>"} == expected


def test_conll_needs_a_path_and_known_options(cfg_factory) -> None:
    with pytest.raises(ConfigError, match="data.path"):
        train(cfg_factory("data=conll"))
    with pytest.raises(ConfigError, match="data.scheme"):
        train(cfg_factory("data=conll", f"data.path={FIXTURE}", "data.scheme=BILOU"))
    with pytest.raises(ConfigError, match="task.module.decoder"):
        train(cfg_factory("data=conll", f"data.path={FIXTURE}", "task.module.decoder=hmm"))
