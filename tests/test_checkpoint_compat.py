"""Checkpoints written before the package layout changed still evaluate, tag and generate, with
the same results (tests/fixtures/checkpoints_v0: a CRF + char-CNN tagger and an LSTM char LM,
trained at dd7d4a0; expected.json holds what that code's eval.py, tag.py and generate.py said).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import REPO, run_script

FIXTURES = REPO / "tests" / "fixtures" / "checkpoints_v0"
EXPECTED = json.loads((FIXTURES / "expected.json").read_text(encoding="utf-8"))


def checked(result) -> str:
    assert result.returncode == 0, result.stderr[-2000:]
    return result.stdout


@pytest.mark.parametrize("case", range(len(EXPECTED["tag"])))
def test_an_old_tagger_tags_as_it_did(case: int, tmp_path: Path) -> None:
    want = EXPECTED["tag"][case]
    out = checked(
        run_script(
            "tag.py",
            f"ckpt_path={FIXTURES / 'tagger.ckpt'}",
            f"text='{want['text']}'",
            cwd=tmp_path,
            timeout=120,
        )
    )
    got = json.loads(out.strip().splitlines()[-1])
    assert got["tags"] == want["tags"]
    assert got["entities"] == want["entities"]


def test_an_old_tagger_evaluates_to_the_same_metrics(tmp_path: Path) -> None:
    checked(
        run_script(
            "eval.py",
            f"ckpt_path={FIXTURES / 'tagger.ckpt'}",
            f"data.data_dir={REPO / 'tests' / 'fixtures' / 'conll_ner'}",
            f"paths.output_dir={tmp_path / 'eval'}",
            "trainer.accelerator=cpu",
            cwd=tmp_path,
            timeout=120,
        )
    )
    metrics = json.loads((tmp_path / "eval" / "metrics.json").read_text())["metrics"]
    for key, value in EXPECTED["eval"].items():
        assert metrics[key] == pytest.approx(value, rel=1e-5), key


def test_an_old_char_lm_generates_the_same_text(tmp_path: Path) -> None:
    want = EXPECTED["generate"]
    out = checked(
        run_script(
            "generate.py",
            f"ckpt_path={FIXTURES / 'char_lm.ckpt'}",
            f"prompt='{want['prompt']}'",
            f"length={want['length']}",
            f"seed={want['seed']}",
            cwd=tmp_path,
            timeout=120,
        )
    )
    assert out == want["text"]


def test_an_old_tagger_keeps_its_parameter_order() -> None:
    """The intent head an old NER checkpoint holds is rebuilt in its own place, so the
    optimizer state (saved in parameter order) lands on the tensors it was made for."""
    import torch

    from seqmodels.nets.slot_tagger import SlotTaggerNet

    saved = torch.load(FIXTURES / "tagger.ckpt", map_location="cpu", weights_only=True)
    hp = saved["hyper_parameters"]
    net = SlotTaggerNet(hp["vocabs"], dict(hp["model"]), "crf")
    net.load_state_dict(saved["state_dict"])
    names = [name for name, _ in net.named_parameters()]
    assert names == [k for k in saved["state_dict"] if k in names]
    moments = [s["exp_avg"].shape for s in saved["optimizer_states"][0]["state"].values()]
    assert moments == [p.shape for p in net.parameters()]


def test_an_old_tagger_resumes_training(tmp_path: Path) -> None:
    """ckpt_path=<an old NER checkpoint> with its options trains on (one more epoch)."""
    import torch
    from conftest import make_cfg

    from seqmodels.commands.train import train

    cfg = make_cfg(
        tmp_path,
        "data=conll",
        f"data.path={REPO / 'tests' / 'fixtures' / 'conll_ner'}",
        "model=bilstm",
        "model.embedding_dim=8",
        "model.hidden_size=8",
        "model.char_features=cnn",
        "model.char_dim=32",
        "model.char_size=64",
        "model.char_max_len=null",
        "task.module.decoder=crf",
        f"ckpt_path={FIXTURES / 'tagger.ckpt'}",
        "trainer.max_epochs=2",
        "trainer.limit_train_batches=1",
        "logger=none",
        "test=false",
    )
    train(cfg)
    last = torch.load(tmp_path / "checkpoints" / "last.ckpt", weights_only=True)
    assert last["global_step"] == 2  # the old run's one step, and one more
