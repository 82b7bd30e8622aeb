"""End-to-end: every model trains on every task through the real config and `train(cfg)`."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
import yaml
from conftest import requires_data
from hydra.errors import ConfigCompositionException
from tb_events import scalar_tags

from seqmodels.commands.train import train
from seqmodels.tasks import CausalEncoderRequired, CharLM, SlotTagger

UNIDIRECTIONAL = ["rnn", "lstm", "gru", "hand_lstm"]
ALL_MODELS = [*UNIDIRECTIONAL, "bilstm", "hand_bilstm"]


@requires_data
@pytest.mark.parametrize("model", ALL_MODELS)
def test_slot_filling_trains_and_tests(cfg_factory, model: str, tmp_path: Path) -> None:
    metrics = train(cfg_factory(f"model={model}"))
    for name in ("loss", "f1", "precision", "recall", "token_acc", "intent_acc"):
        assert math.isfinite(metrics[f"test/{name}"])
    assert 0.0 <= metrics["test/f1"] <= 100.0
    assert (tmp_path / "checkpoints" / "last.ckpt").is_file()


@requires_data
@pytest.mark.parametrize("model", UNIDIRECTIONAL)
def test_char_lm_trains_and_tests(cfg_factory, model: str) -> None:
    metrics = train(cfg_factory("task=char_lm", f"model={model}", "data.block_size=32"))
    assert metrics["val/bpc"] == pytest.approx(metrics["val/loss"] / math.log(2), rel=1e-5)
    assert metrics["test/ppl"] == pytest.approx(math.exp(metrics["test/loss"]), rel=1e-4)
    # 65 characters: an untrained model is near log2(65) = 6.02 bits, a few steps do better.
    assert metrics["val/bpc"] < 6.2


@requires_data
def test_snips_trains(cfg_factory) -> None:
    metrics = train(cfg_factory("data=snips", "model=gru"))
    assert math.isfinite(metrics["test/f1"])


@requires_data
def test_char_lm_on_any_text_file(cfg_factory, tmp_path: Path) -> None:
    text = tmp_path / "poem.txt"
    text.write_text("the quick brown fox jumps over the lazy dog. " * 200, encoding="utf-8")
    metrics = train(cfg_factory("task=char_lm", f"data.path={text}", "data.block_size=16"))
    assert metrics["val/bpc"] < math.log2(30)


@requires_data
@pytest.mark.parametrize(
    ("task", "overrides"),
    [
        ("slot_filling", ["data.batch_size=16"]),
        ("char_lm", ["data.batch_size=8", "data.block_size=32"]),
    ],
)
def test_overfits_a_small_batch(cfg_factory, task, overrides, tmp_path: Path) -> None:
    cfg = cfg_factory(
        f"task={task}",
        "model=lstm",
        "model.hidden_size=64",
        "model.embedding_dim=32",
        "model.dropout=0.0",
        "debug=overfit",
        "trainer.overfit_batches=1",
        "trainer.max_epochs=60",
        "task.module.optimizer.lr=0.01",
        "test=false",
        *overrides,
    )
    train(cfg)
    losses = scalar_tags(tmp_path / "tensorboard")["train/loss"]
    assert losses[-1] < 0.1 * losses[0], (losses[0], losses[-1])


@requires_data
def test_tensorboard_holds_the_documented_tags(cfg_factory, tmp_path: Path) -> None:
    train(cfg_factory("model=lstm", "trainer.max_epochs=2"))
    tags = scalar_tags(tmp_path / "tensorboard")
    for tag in (
        "train/loss",
        "val/loss",
        "val/f1",
        "val/precision",
        "val/recall",
        "val/intent_acc",
        "test/f1",
        "test/loss",
        "lr",
        "grad_norm/total",
        "grad_norm/encoder.rnn.weight_ih_l0",
        "grad_norm/embedding.weight",
    ):
        assert tag in tags, f"{tag} missing from {sorted(tags)}"
    assert len(tags["val/f1"]) == 2  # once per epoch (the HPARAMS values: tensorboard/hparams)
    assert len(tags["train/loss"]) == 8  # once per step
    assert all(v > 0 for v in tags["grad_norm/total"])
    hparams = yaml.safe_load((tmp_path / "tensorboard" / "hparams.yaml").read_text())
    assert hparams["model"]["name"] == "lstm" and hparams["task"]["name"] == "slot_filling"


def test_scheduler_group_follows_the_task(cfg_factory) -> None:
    plateau = cfg_factory().task.module.scheduler  # slot_filling's default
    assert plateau._target_.endswith("ReduceLROnPlateau")
    assert (plateau.monitor, plateau.mode) == ("val/f1", "max")
    lm = cfg_factory("task=char_lm", "scheduler=plateau").task.module.scheduler
    assert (lm.monitor, lm.mode) == ("val/bpc", "min")
    assert cfg_factory("task=char_lm").task.module.scheduler is None
    assert cfg_factory("scheduler=none").task.module.scheduler is None
    assert cfg_factory("experiment=snips_best").task.module.scheduler._target_.endswith("Cosine")


@requires_data
def test_cosine_scheduler_warms_up_then_decays(cfg_factory, tmp_path: Path) -> None:
    train(
        cfg_factory(
            "scheduler=cosine",
            "task.module.scheduler.warmup_steps=3",
            "task.module.scheduler.min_lr_ratio=0.1",
            "trainer.max_epochs=3",
        )
    )
    lr = scalar_tags(tmp_path / "tensorboard")["lr"]
    peak = 0.005  # task.module.optimizer.lr
    assert len(lr) == 12  # 3 epochs x 4 batches, logged every step
    assert lr[:4] == pytest.approx([peak / 3, 2 * peak / 3, peak, peak])  # warm-up, then the top
    assert all(a > b for a, b in zip(lr[3:], lr[4:]))  # then falls every step
    assert lr[-1] == pytest.approx(peak * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * 8 / 9))))


@requires_data
def test_inverse_decay_sgd_steps_once_an_epoch(cfg_factory, tmp_path: Path) -> None:
    train(
        cfg_factory(
            "scheduler=inverse_decay",
            "task.module.scheduler.decay=0.5",
            "task.module.optimizer._target_=torch.optim.SGD",
            "task.module.optimizer.lr=0.02",
            "trainer.max_epochs=3",
        )
    )
    lr = scalar_tags(tmp_path / "tensorboard")["lr"]
    assert lr == pytest.approx([0.02] * 4 + [0.02 / 1.5] * 4 + [0.01] * 4)  # 4 batches an epoch


@requires_data
def test_inverse_decay_resumed_after_a_mid_epoch_stop_takes_the_next_epochs_rate(
    cfg_factory, tmp_path: Path
) -> None:
    """max_steps=6 stops in epoch 1 (4 batches an epoch), before its epoch-end step; the
    resumed run's epoch 2 must take lr / (1 + 0.5 x 2), not epoch 1's rate again."""
    common = (
        "scheduler=inverse_decay",
        "task.module.scheduler.decay=0.5",
        "task.module.optimizer._target_=torch.optim.SGD",
        "task.module.optimizer.lr=0.02",
        "callbacks.early_stopping=null",
        "test=false",
        "trainer.max_epochs=3",
    )
    train(cfg_factory(*common, "trainer.max_steps=6"))
    train(cfg_factory(*common, f"+ckpt_path={tmp_path}/checkpoints/last.ckpt"))
    lr = scalar_tags(tmp_path / "tensorboard")["lr"]
    assert lr == pytest.approx([0.02] * 4 + [0.02 / 1.5] * 2 + [0.01] * 4)


def test_inverse_decay_refuses_a_negative_decay() -> None:
    from seqmodels.core.errors import ConfigError
    from seqmodels.tasks.schedules import InverseDecay

    optimizer = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.1)
    with pytest.raises(ConfigError, match="scheduler.decay"):
        InverseDecay(optimizer, decay=-0.1)


@requires_data
def test_returned_main_metric_is_the_best_epochs(cfg_factory, tmp_path: Path) -> None:
    metrics = train(cfg_factory("model=gru", "trainer.max_epochs=3"))
    per_epoch = scalar_tags(tmp_path / "tensorboard")["val/f1"][:3]
    assert metrics["val/f1"] == pytest.approx(max(per_epoch))


@requires_data
def test_char_lm_logs_bpc(cfg_factory, tmp_path: Path) -> None:
    train(cfg_factory("task=char_lm", "data.block_size=32"))
    tags = scalar_tags(tmp_path / "tensorboard")
    assert {"val/bpc", "val/ppl", "val/loss", "test/bpc", "train/loss"} <= set(tags)


@requires_data
@pytest.mark.parametrize("task", ["slot_filling", "char_lm"])
def test_checkpoint_reloads_with_same_test_metrics(cfg_factory, task, tmp_path: Path) -> None:
    import lightning as L
    from hydra.utils import instantiate

    extra = ["data.block_size=32"] if task == "char_lm" else []
    cfg = cfg_factory(f"task={task}", "model=gru", "trainer.max_epochs=2", *extra)
    metrics = train(cfg)
    (best,) = (tmp_path / "checkpoints").glob("epoch_*.ckpt")
    checkpoint = torch.load(best, weights_only=True)
    hparams = checkpoint["hyper_parameters"]
    module_cls = SlotTagger if task == "slot_filling" else CharLM
    module = module_cls(**hparams)
    module.load_state_dict(checkpoint["state_dict"])
    vocab_key = "vocabs" if task == "slot_filling" else "vocab"
    datamodule = instantiate(cfg.data, **{vocab_key: hparams[vocab_key]})
    trainer = L.Trainer(
        accelerator="cpu",
        logger=False,
        limit_test_batches=2,
        enable_progress_bar=False,
        default_root_dir=tmp_path / "reloaded",  # the test's span report goes here, not the cwd
    )
    reloaded = {
        k: v for part in trainer.test(module, datamodule=datamodule) for k, v in part.items()
    }
    for name, value in reloaded.items():
        assert value == pytest.approx(metrics[name], rel=1e-5), name


def test_unknown_model_lists_the_options(cfg_factory) -> None:
    with pytest.raises(ConfigCompositionException) as err:
        cfg_factory("model=foo")
    message = str(err.value)
    assert "model" in message and "foo" in message


def test_bidirectional_char_lm_is_refused(cfg_factory, tmp_path: Path) -> None:
    with pytest.raises(CausalEncoderRequired, match="bidirectional"):
        train(cfg_factory("task=char_lm", "model=bilstm"))
    assert not (tmp_path / "checkpoints").exists()


@requires_data
def test_same_seed_same_metrics(cfg_factory) -> None:
    first = train(cfg_factory("model=gru", "seed=0", "callbacks.model_checkpoint=null"))
    second = train(cfg_factory("model=gru", "seed=0", "callbacks.model_checkpoint=null"))
    assert first == second


@requires_data
def test_csv_and_no_logger(cfg_factory, tmp_path: Path) -> None:
    train(cfg_factory("model=gru", "logger=csv"))
    assert list((tmp_path / "csv").glob("metrics.csv"))
    metrics = train(
        cfg_factory("model=gru", "logger=none", "paths.output_dir=" + str(tmp_path / "b"))
    )
    assert math.isfinite(metrics["test/f1"])
