"""Every char-LM embedding row learns (no id is padding); weight decay only on weight matrices."""

from __future__ import annotations

import torch
from torch.nn import functional as F

from seqmodels.tasks import CharLM
from seqmodels.tasks.base import decay_groups

MODEL = {"cell": "lstm", "embedding_dim": 8, "hidden_size": 12, "num_layers": 1, "dropout": 0.0}
ADAM = {"_target_": "torch.optim.AdamW", "lr": 0.01, "weight_decay": 0.1}


def test_every_char_lm_embedding_row_receives_gradient() -> None:
    vocab = ["\n", " ", "a", "b", "c"]  # id 0 is a real character (newline), not padding
    module = CharLM(vocab=vocab, model=MODEL, optimizer=ADAM)
    x = torch.tensor([[0, 1, 2, 3, 4, 0, 2]])
    logits, _ = module(x)
    F.cross_entropy(logits[:, :-1].transpose(1, 2), x[:, 1:]).backward()
    row_norms = module.embedding.weight.grad.norm(dim=1)
    assert (row_norms > 0).all(), f"rows without gradient: {row_norms.tolist()}"
    assert module.embedding.padding_idx is None


def test_decay_groups_decay_weight_matrices_only() -> None:
    module = CharLM(vocab=list("abc"), model=MODEL, optimizer=ADAM)
    decayed, kept = decay_groups(module, 0.1)
    names = {id(p): n for n, p in module.named_parameters()}
    assert decayed["weight_decay"] == 0.1 and kept["weight_decay"] == 0.0
    decayed_names = sorted(names[id(p)] for p in decayed["params"])
    kept_names = sorted(names[id(p)] for p in kept["params"])
    assert "embedding.weight" in kept_names
    assert all("bias" in n or n == "embedding.weight" for n in kept_names), kept_names
    assert all(n.endswith("weight") or "weight_" in n for n in decayed_names), decayed_names
    assert "head.weight" in decayed_names
    assert len(decayed_names) + len(kept_names) == len(names)


def test_decay_weights_only_reaches_the_optimizer() -> None:
    plain = CharLM(vocab=list("abc"), model=MODEL, optimizer=ADAM)
    grouped = CharLM(vocab=list("abc"), model=MODEL, optimizer={**ADAM, "decay_weights_only": True})
    (one,) = plain.configure_optimizers()["optimizer"].param_groups
    assert one["weight_decay"] == 0.1
    decayed, kept = grouped.configure_optimizers()["optimizer"].param_groups
    assert (decayed["weight_decay"], kept["weight_decay"]) == (0.1, 0.0)
