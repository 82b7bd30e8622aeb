"""A carried state restored on another device than the batch is moved to the batch's device.

Lightning calls ``on_load_checkpoint`` before the strategy moves the module to the GPU, so a
mid-epoch resume on a GPU restores the state on the CPU. Here the module and batch live on the
``meta`` device (shapes only) while the restored state is on the CPU, the same mismatch.
"""

from __future__ import annotations

import torch

from seqmodels.tasks import CharLM

MODEL = {"cell": "lstm", "embedding_dim": 8, "hidden_size": 12, "num_layers": 2, "dropout": 0.0}
ADAM = {"_target_": "torch.optim.Adam", "lr": 0.01}


def test_a_restored_state_follows_the_batch_to_its_device() -> None:
    module = CharLM(vocab=list("abcd"), model=MODEL, optimizer=ADAM)
    state = (torch.randn(2, 3, 12), torch.randn(2, 3, 12))
    module.on_load_checkpoint({"carried_state": list(state)})
    assert module.train_state[0].device.type == "cpu"
    module.to("meta")
    x = torch.zeros(3, 5, dtype=torch.long, device="meta")
    logits, new_state = module(x, module.train_state)
    assert logits.device.type == "meta" and logits.shape == (3, 5, 4)
    assert all(part.device.type == "meta" for part in new_state)
