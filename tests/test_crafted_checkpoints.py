"""A checkpoint never chooses what code runs: the classes it names are looked up, not imported.

Each case edits a real checkpoint the way an attacker sharing a file could (plain values only,
so ``torch.load(weights_only=True)`` accepts it) and gives it to every reader: ``evaluate``
(eval.py), ``load_module`` (report.py) and ``load_net`` (tag.py, generate.py, export.py).
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from conftest import make_cfg
from test_eval import eval_cfg

from seqmodels.commands.evaluate import evaluate, load_module
from seqmodels.commands.train import train
from seqmodels.core.errors import CheckpointError
from seqmodels.nets import load_net


@pytest.fixture(scope="module")
def char_ckpt(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("char")
    text = out / "text.txt"
    text.write_text("to be or not to be, that is the question\n" * 200)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        cfg = make_cfg(
            out, "task=char_lm", "model=lstm", f"data.path={text}", "data.block_size=16",
            "data.batch_size=8", "logger=none", "test=false",
        )  # fmt: skip
        train(cfg)
    finally:
        torch.set_num_threads(threads)
    return out / "checkpoints" / "last.ckpt"


def crafted(src: Path, dest: Path, edit) -> Path:
    checkpoint = torch.load(src, map_location="cpu", weights_only=True)
    edit(checkpoint)
    torch.save(checkpoint, dest)
    return dest


def test_a_stored_module_target_is_never_called(char_ckpt: Path, tmp_path: Path) -> None:
    sentinel = tmp_path / "written_by_the_checkpoint"

    def edit(c):  # what the old loader imported and built from the file
        c["config"]["task"]["module"]["_target_"] = "pathlib.Path.write_text"
        c["hyper_parameters"]["_instantiator"] = "builtins.exec"
        c["hyper_parameters"]["self"] = str(sentinel)

    ckpt = crafted(char_ckpt, tmp_path / "a.ckpt", edit)
    module, _ = load_module(ckpt, data_kind="text")  # looked up by task name: CharLM
    assert type(module).__name__ == "CharLM"
    net, _ = load_net(ckpt, data_kind="text")
    assert type(net).__name__ == "CharLMNet"
    assert not sentinel.exists()


BAD = {
    "unknown task name": lambda c: c["config"]["task"].update(name="builtins.open"),
    "a class in the model options": lambda c: c["hyper_parameters"]["model"].update(
        _target_="tempfile.mkdtemp"
    ),
    "a class nested in the model options": lambda c: c["hyper_parameters"]["model"].update(
        extra=[{"_target_": "urllib.request.urlopen", "url": "http://127.0.0.1:9/"}]
    ),
}


@pytest.mark.parametrize("case", BAD)
def test_every_reader_refuses_a_checkpoint_naming_foreign_code(
    char_ckpt: Path, tmp_path: Path, case: str
) -> None:
    ckpt = crafted(char_ckpt, tmp_path / "bad.ckpt", BAD[case])
    for data_kind in (None, "text"):
        for load in (load_module, load_net):
            with pytest.raises(CheckpointError):
                load(ckpt, data_kind=data_kind)
    out = tmp_path / "eval"
    with pytest.raises(CheckpointError):
        evaluate(eval_cfg(ckpt, out))
    assert not (out / "metrics.json").exists()


DATA_BAD = {
    "a foreign data class": lambda c: c["config"]["data"].update(_target_="builtins.open"),
    "a write through the data class path": lambda c: c["config"]["data"].update(
        _target_="pathlib.Path.write_text"
    ),
    "a class nested in the data options": lambda c: c["config"]["data"].update(
        path={"_target_": "pathlib.Path.write_text", "data": "x"}
    ),
}


@pytest.mark.parametrize("case", DATA_BAD)
def test_evaluation_refuses_data_options_naming_foreign_code(
    char_ckpt: Path, tmp_path: Path, case: str
) -> None:
    ckpt = crafted(char_ckpt, tmp_path / "bad.ckpt", DATA_BAD[case])
    out = tmp_path / "eval"
    with pytest.raises(CheckpointError, match="bad.ckpt|_target_"):
        evaluate(eval_cfg(ckpt, out))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.ckpt"]  # nothing written


def test_an_untouched_checkpoint_still_evaluates(char_ckpt: Path, tmp_path: Path) -> None:
    metrics = evaluate(eval_cfg(char_ckpt, tmp_path / "eval"))
    assert metrics["test/loss"] > 0
