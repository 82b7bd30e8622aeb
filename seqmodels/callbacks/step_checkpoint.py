"""``last.ckpt`` every N optimizer steps, so that a crash in a long epoch loses at most N steps."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import lightning as L
from lightning.pytorch.callbacks import ModelCheckpoint


class StepCheckpoint(ModelCheckpoint):
    """Write ``<dirpath>/last.ckpt`` every ``every_n_train_steps`` optimizer steps (0: never).

    Only the last checkpoint: the best one stays ``model_checkpoint``'s, chosen at validations
    by the weights validated. The last batch of an epoch is skipped: the epoch's validation
    and its checkpoint follow at once, and Lightning, resuming from a checkpoint written
    between that batch and the validation, would go on to the next epoch without validating.
    A resume from any step checkpoint (``ckpt_path=last``) thus continues mid-epoch, as the
    uninterrupted run went on.
    """

    def __init__(self, dirpath: str | Path, every_n_train_steps: int = 0) -> None:
        super().__init__(
            dirpath=dirpath,
            every_n_train_steps=every_n_train_steps,
            save_top_k=0,
            save_last=True,
            enable_version_counter=False,  # the one last.ckpt, shared with model_checkpoint
        )

    def on_train_batch_end(self, trainer: L.Trainer, *args: Any, **kwargs: Any) -> None:
        if trainer.fit_loop.epoch_loop.batch_idx + 1 >= trainer.num_training_batches:
            return
        super().on_train_batch_end(trainer, *args, **kwargs)
