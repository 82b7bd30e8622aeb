"""What a checkpoint needs beyond Lightning's defaults: the run's config and the RNG states."""

from __future__ import annotations

import random
from typing import Any

import lightning as L
import numpy as np
import torch

from seqmodels.core.distributed import gathered, own_share


class SaveRunConfig(L.Callback):
    """Write the run's resolved config (a plain dict) into every checkpoint under ``"config"``.

    With it a checkpoint alone says which task, model and data it was trained on, so
    ``scripts/eval.py ckpt_path=...`` needs nothing else. ``train()`` adds this callback.
    """

    def __init__(self, config: dict[str, Any]) -> None:
        self.config = config

    def on_save_checkpoint(
        self, trainer: L.Trainer, pl_module: L.LightningModule, checkpoint: dict[str, Any]
    ) -> None:
        checkpoint["config"] = self.config


class RNGState(L.Callback):
    """Save the torch, numpy and Python RNG states in checkpoints; restore them on resume.

    Lightning restores weights, optimizer, schedulers, loops and callback states, but not the
    global random generators, which draw dropout masks and each epoch's shuffling. Restoring
    them with the callback states (before the training dataloader is first iterated; the
    sanity check runs with isolated RNG) makes a resumed run continue exactly as the
    uninterrupted one would. States are stored as tensors and lists, so checkpoints still
    load with ``weights_only=True``. Under DDP each process's states are stored too
    (``rng_states_per_rank``), and each process of a resumed run of the same size takes its own.
    """

    def __init__(self) -> None:
        self._own: dict[str, Any] | None = None  # this process's states, when resuming

    def on_save_checkpoint(
        self, trainer: L.Trainer, pl_module: L.LightningModule, checkpoint: dict[str, Any]
    ) -> None:
        if (states := gathered(trainer, self.state_dict())) is not None:
            checkpoint["rng_states_per_rank"] = states

    def on_load_checkpoint(
        self, trainer: L.Trainer, pl_module: L.LightningModule, checkpoint: dict[str, Any]
    ) -> None:  # Lightning calls this just before load_state_dict
        self._own = own_share(trainer, checkpoint.get("rng_states_per_rank"))

    def state_dict(self) -> dict[str, Any]:
        kind, keys, pos, has_gauss, cached = np.random.get_state()
        version, state, gauss = random.getstate()
        return {
            "torch": torch.get_rng_state(),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
            "numpy": [kind, torch.from_numpy(keys.astype(np.int64)), pos, has_gauss, cached],
            "python": [version, list(state), gauss],
        }

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        state_dict, self._own = self._own or state_dict, None
        torch.set_rng_state(state_dict["torch"])
        if state_dict["cuda"] and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(state_dict["cuda"])
        kind, keys, pos, has_gauss, cached = state_dict["numpy"]
        np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
        version, internal, gauss = state_dict["python"]
        random.setstate((version, tuple(internal), gauss))
