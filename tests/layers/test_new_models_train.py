"""minGRU/minLSTM and the Transformer through every task, the callbacks, generate and tag."""

from __future__ import annotations

import io
import math
from pathlib import Path

import pytest
from conftest import make_cfg, requires_data
from hydra import compose, initialize_config_dir
from tb_events import scalar_tags

from seqmodels.commands.evaluate import load_module
from seqmodels.commands.generate import generate
from seqmodels.commands.tag import Tagger
from seqmodels.commands.train import CONFIG_DIR, train

pytestmark = pytest.mark.usefixtures("one_thread_per_module")


def sample(ckpt: Path, seed: int) -> str:
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        overrides = [f"ckpt_path={ckpt}", "prompt=ROMEO:", "length=40", f"seed={seed}"]
        cfg = compose("generate", overrides)
    out = io.StringIO()
    generate(cfg, out=out)
    return out.getvalue()


@requires_data
@pytest.mark.parametrize("model", ["mingru", "transformer"])
def test_char_lm_trains_logs_flow_and_gates_and_generates(tmp_path: Path, model: str) -> None:
    metrics = train(
        make_cfg(
            tmp_path,
            "task=char_lm",
            f"model={model}",
            "data.block_size=20",
            "model.window=20" if model == "transformer" else "model.num_layers=2",
            "callbacks.grad_flow.every_n_steps=2",
        )
    )
    assert math.isfinite(metrics["test/loss"]) and math.isfinite(metrics["test/loss_windowed"])
    tags = scalar_tags(tmp_path / "tensorboard")
    assert len(tags["grad_flow/k=1"]) == 2 and all(v > 0 for v in tags["grad_flow/k=16"])
    gates = {t for t in tags if t.startswith("gates/")}
    if model == "mingru":  # the top layer's state, and both layers' gates
        assert all(v > 0 for v in tags["grad_flow/hidden/k=1"])
        expected = {"gates/l0/update_mean", "gates/l1/update_saturated", "gates/l1/new_abs_mean"}
        assert expected <= gates
    else:  # no recurrent state, no gates: only dL/dx is measured
        assert "grad_flow/hidden/k=1" not in tags and not gates
    ckpt = tmp_path / "checkpoints" / "last.ckpt"
    text = sample(ckpt, seed=1)
    assert text.startswith("ROMEO:") and len(text) == len("ROMEO:") + 40 + 1
    assert text == sample(ckpt, seed=1) and text != sample(ckpt, seed=2)


@requires_data
def test_slot_filling_with_a_crf_char_features_and_tag(tmp_path: Path) -> None:
    overrides = ["model=biminlstm", "task.module.decoder=crf", "model.char_features=cnn"]
    metrics = train(make_cfg(tmp_path, *overrides, "callbacks.grad_flow.every_n_steps=2"))
    assert 0 <= metrics["test/f1"] <= 100
    tags = scalar_tags(tmp_path / "tensorboard")
    assert "gates/l0_reverse/forget_mean" in tags and "grad_flow/hidden/k=1" in tags
    module, checkpoint = load_module(tmp_path / "checkpoints" / "last.ckpt", "slot_filling")
    tagger = Tagger(module, checkpoint["hyper_parameters"]["vocabs"])
    result = tagger("show me flights from denver to boston")
    assert len(result["tags"]) == 7 and result["intent"]["name"]


@requires_data
@pytest.mark.parametrize(
    ("model", "data"), [("transformer", "adding"), ("minlstm", "copy"), ("bitransformer", "copy")]
)
def test_long_range_problems(tmp_path: Path, model: str, data: str) -> None:
    whole = ["model.window=null"] if "transformer" in model else []  # attend to every step
    metrics = train(make_cfg(tmp_path, "task=long_range", f"data={data}", f"model={model}", *whole))
    assert math.isfinite(metrics["test/loss"])
