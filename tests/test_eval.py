"""scripts/eval.py: a checkpoint alone is enough to test a model and write its predictions."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
from conftest import DATA_DIR, requires_data, run_eval_cli
from hydra import compose, initialize_config_dir
from seqeval.metrics import f1_score

from seqmodels.commands.evaluate import evaluate
from seqmodels.commands.train import CONFIG_DIR, train
from seqmodels.core.errors import CheckpointError


def eval_cfg(ckpt_path: Path, output_dir: Path, *overrides: str):
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        return compose(
            config_name="eval",
            overrides=[
                f"ckpt_path={ckpt_path}",
                f"paths.output_dir={output_dir}",
                f"data.data_dir={DATA_DIR}",
                "trainer.accelerator=cpu",
                "+trainer.enable_progress_bar=false",
                *overrides,
            ],
        )


def read_conll(path: Path) -> tuple[list[list[str]], list[list[str]], int]:
    """Gold and predicted tag sequences of a ``token gold predicted`` file, and its token count."""
    golds, preds, gold, pred, tokens = [], [], [], [], 0
    for line in path.read_text(encoding="utf-8").split("\n"):
        if not line:
            if gold:
                golds.append(gold)
                preds.append(pred)
            gold, pred = [], []
            continue
        token, g, p = line.split(" ")
        gold.append(g)
        pred.append(p)
        tokens += 1
    return golds, preds, tokens


@requires_data
def test_eval_cli_tests_a_checkpoint_and_writes_conll_matching_seqeval(
    cfg_factory, tmp_path: Path
) -> None:
    cfg = cfg_factory("model=gru", "trainer.max_epochs=2", "trainer.limit_test_batches=1.0")
    trained = train(cfg)
    (best,) = (tmp_path / "checkpoints").glob("epoch_*.ckpt")
    stored = torch.load(best, weights_only=True)["config"]["data"]  # plain values only
    for key in ("_target_", "name", "batch_size", "eval_batch_size", "min_freq"):
        assert stored[key] == cfg.data[key], key

    work = tmp_path / "cwd"
    work.mkdir()
    result = run_eval_cli(f"ckpt_path={best}", cwd=work)
    assert result.returncode == 0, result.stderr[-3000:]
    (run,) = (work / "outputs" / "eval").iterdir()
    report = json.loads((run / "metrics.json").read_text())
    metrics = report["metrics"]
    assert report["split"] == "test" and report["task"] == "slot_filling"
    # The same checkpoint on the same (whole) test split as train() tested it.
    for name in ("test/f1", "test/precision", "test/recall", "test/loss", "test/intent_acc"):
        assert metrics[name] == pytest.approx(trained[name], rel=1e-5), name

    golds, preds, tokens = read_conll(run / "predictions.conll")
    assert len(golds) == 893 and tokens == 9164  # every ATIS test utterance and token
    assert 100 * f1_score(golds, preds) == pytest.approx(metrics["test/f1"], abs=1e-4)


@requires_data
def test_eval_char_lm_checkpoint_on_val(cfg_factory, tmp_path: Path) -> None:
    train(cfg_factory("task=char_lm", "data.block_size=32", "test=false"))
    out = tmp_path / "eval"
    metrics = evaluate(eval_cfg(tmp_path / "checkpoints" / "last.ckpt", out, "split=val"))
    assert metrics["val/bpc"] == pytest.approx(metrics["val/loss"] / math.log(2), rel=1e-5)
    assert json.loads((out / "metrics.json").read_text())["metrics"] == metrics
    assert not (out / "predictions.conll").exists()


def test_eval_refuses_a_checkpoint_without_a_run_config(tmp_path: Path) -> None:
    foreign = tmp_path / "foreign.ckpt"
    torch.save({"state_dict": {}}, foreign)
    with pytest.raises(CheckpointError, match="config"):
        evaluate(eval_cfg(foreign, tmp_path / "eval"))
    with pytest.raises(CheckpointError, match="does not exist"):
        evaluate(eval_cfg(tmp_path / "missing.ckpt", tmp_path / "eval"))
