"""On Ctrl-C or SIGTERM, finish the current batch, save a checkpoint, then stop."""

from __future__ import annotations

import logging
import signal
import threading
from pathlib import Path
from typing import Any

import lightning as L
from lightning.pytorch.trainer.states import TrainerFn
from lightning.pytorch.utilities.exceptions import SIGTERMException

log = logging.getLogger(__name__)


class InterruptCheckpoint(L.Callback):
    """Save ``<dirpath>/<filename>.ckpt`` when training is interrupted by Ctrl-C or SIGTERM.

    Lightning turns SIGTERM into an exit at the end of the current batch and calls
    ``on_exception``, where this saves the checkpoint. Ctrl-C would stop wherever
    Python happens to be, possibly halfway through an optimizer step; during training this
    callback takes the first Ctrl-C the same way, as a request to stop once the current batch
    is done (a second Ctrl-C stops at once, saving nothing). Other errors (a NaN loss, a bug)
    save nothing here: their weights are not worth resuming from. Resume with
    ``ckpt_path=<dirpath>/<filename>.ckpt``; a mid-epoch checkpoint continues where it stopped.

    (Lightning's ``OnExceptionCheckpoint`` saves on every error, NaN loss included, and as a
    ``Checkpoint`` it would stand in for ``trainer.checkpoint_callback`` when
    ``callbacks.model_checkpoint=null``; hence a plain callback.)
    """

    def __init__(self, dirpath: str | Path, filename: str = "interrupted") -> None:
        self.ckpt_path = str(Path(dirpath) / f"{filename}.ckpt")
        self._stop_requested = False
        self._stopped_cleanly = False
        self._previous_handler: Any = None

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._stop_requested = False
        if threading.current_thread() is threading.main_thread():
            self._previous_handler = signal.signal(signal.SIGINT, self._request_stop)

    def _request_stop(self, signum: int, frame: Any) -> None:
        log.warning("Ctrl-C: stopping after this batch and saving %s (Ctrl-C again: now)", self)
        self._stop_requested = True
        self._restore_handler()

    def _restore_handler(self) -> None:
        if self._previous_handler is not None:
            signal.signal(signal.SIGINT, self._previous_handler)
            self._previous_handler = None

    def on_train_batch_end(self, trainer: L.Trainer, *args: Any, **kwargs: Any) -> None:
        if self._stop_requested:
            self._stop_requested, self._stopped_cleanly = False, True
            raise KeyboardInterrupt

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._restore_handler()

    def on_exception(
        self, trainer: L.Trainer, pl_module: L.LightningModule, exception: BaseException
    ) -> None:
        self._restore_handler()
        clean = isinstance(exception, SIGTERMException) or (
            isinstance(exception, KeyboardInterrupt) and self._stopped_cleanly
        )
        self._stopped_cleanly = False
        if not clean:  # another error, or a second Ctrl-C somewhere inside a step
            return
        if trainer.state.fn != TrainerFn.FITTING or trainer.sanity_checking:
            return
        trainer.save_checkpoint(self.ckpt_path)
        log.warning(
            "%s at step %d (epoch %d): saved %s; resume with ckpt_path=%s",
            "SIGTERM" if isinstance(exception, SIGTERMException) else "Ctrl-C",
            trainer.global_step,
            trainer.current_epoch,
            self.ckpt_path,
            self.ckpt_path,
        )

    def __str__(self) -> str:
        return self.ckpt_path
