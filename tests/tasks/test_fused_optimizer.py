"""task.module.optimizer.fused=null: a fused step where torch has one, the same updates."""

from __future__ import annotations

import pytest
import torch
from torch.nn import functional as F

from seqmodels.tasks import CharLM
from seqmodels.tasks.base import can_fuse, resolve_fused

MODEL = {"cell": "lstm", "embedding_dim": 8, "hidden_size": 12, "num_layers": 1, "dropout": 0.0}


def _optimizer(**cfg) -> torch.optim.Optimizer:
    module = CharLM(vocab=list("abc"), model=MODEL, optimizer=cfg)
    return module.configure_optimizers()["optimizer"]


@pytest.mark.parametrize("target", ["torch.optim.AdamW", "torch.optim.Adam", "torch.optim.SGD"])
def test_null_fuses_the_optimizers_that_can(target: str) -> None:
    assert _optimizer(_target_=target, lr=0.01, fused=None).defaults["fused"] is True
    assert not _optimizer(_target_=target, lr=0.01, fused=False).defaults["fused"]
    assert not _optimizer(_target_=target, lr=0.01).defaults.get("fused")  # no key: as before


def test_an_optimizer_without_the_option_is_built_without_it() -> None:
    optimizer = _optimizer(_target_="torch.optim.RMSprop", lr=0.01, fused=None)
    assert isinstance(optimizer, torch.optim.RMSprop)
    assert resolve_fused({"_target_": "torch.optim.RMSprop", "fused": None}, []) == {
        "_target_": "torch.optim.RMSprop"
    }


def test_integer_or_meta_parameters_are_not_fused() -> None:
    cfg = {"_target_": "torch.optim.AdamW"}
    assert can_fuse(cfg, [torch.nn.Parameter(torch.zeros(2))])
    integer = torch.nn.Parameter(torch.zeros(2, dtype=torch.long), requires_grad=False)
    assert not can_fuse(cfg, [torch.nn.Parameter(torch.zeros(2)), integer])
    assert not can_fuse(cfg, [torch.nn.Parameter(torch.zeros(2, device="meta"))])
    assert not can_fuse({"lr": 0.1}, [torch.nn.Parameter(torch.zeros(2))])  # no _target_


@pytest.mark.parametrize("option", ["foreach", "differentiable"])
def test_foreach_or_differentiable_keep_the_optimizer_unfused(option: str) -> None:
    optimizer = _optimizer(_target_="torch.optim.AdamW", lr=0.01, fused=None, **{option: True})
    assert optimizer.defaults[option] and not optimizer.defaults["fused"]


@pytest.mark.parametrize("precision", ["16-mixed", "bf16-mixed"])
def test_mixed_precision_with_clipping_trains_unfused(precision: str) -> None:
    """Lightning's mixed-precision plugin (16-mixed with a gradient scaler, as on a GPU; its
    plugin on the CPU here; bf16-mixed) refuses to clip a fused step's gradients."""
    import lightning as L
    from lightning.pytorch.plugins.precision import MixedPrecision

    pairs = [(torch.randint(0, 3, (8,)), torch.randint(0, 3, (8,))) for _ in range(8)]
    module = CharLM(
        vocab=list("abc"),
        model={**MODEL, "cell": "hand_lstm"},
        optimizer={"_target_": "torch.optim.AdamW", "lr": 0.003, "fused": None},
    )
    trainer = L.Trainer(
        accelerator="cpu",
        max_steps=2,
        gradient_clip_val=5.0,
        plugins=[
            MixedPrecision(precision, "cpu", torch.amp.GradScaler("cpu"))
            if precision == "16-mixed"
            else MixedPrecision(precision, "cpu")
        ],
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        limit_val_batches=0,
    )
    trainer.fit(module, train_dataloaders=torch.utils.data.DataLoader(pairs, batch_size=4))
    assert trainer.global_step == 2
    assert not trainer.optimizers[0].defaults["fused"]


def test_fused_and_plain_adamw_take_the_same_steps() -> None:
    x = torch.tensor([[0, 1, 2, 1, 0, 2, 2, 1]])
    weights = []
    for fused in (None, False):
        torch.manual_seed(0)
        module = CharLM(
            vocab=list("abc"),
            model=MODEL,
            optimizer={"_target_": "torch.optim.AdamW", "lr": 0.01, "fused": fused},
        )
        optimizer = module.configure_optimizers()["optimizer"]
        for _ in range(5):
            logits, _ = module(x)
            loss = F.cross_entropy(logits[:, :-1].transpose(1, 2), x[:, 1:])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        weights.append(torch.cat([p.detach().flatten() for p in module.parameters()]))
    torch.manual_seed(0)
    untrained = CharLM(vocab=list("abc"), model=MODEL, optimizer={"_target_": "x"})
    start = torch.cat([p.detach().flatten() for p in untrained.parameters()])
    assert (weights[0] - start).abs().max() > 0.01  # the steps moved the weights
    assert torch.allclose(weights[0], weights[1], atol=1e-6)
