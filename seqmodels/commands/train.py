"""The composition root: config in, trained and tested model (and its metrics) out."""

from __future__ import annotations

import logging
import os
import re
import warnings
from pathlib import Path
from typing import Any

import hydra
import lightning as L
import torch
from hydra.core.hydra_config import HydraConfig
from hydra.utils import get_class, instantiate
from lightning.pytorch.callbacks import EarlyStopping, LearningRateMonitor, ModelCheckpoint
from lightning.pytorch.loggers import TensorBoardLogger
from lightning.pytorch.utilities import rank_zero_only
from omegaconf import DictConfig, OmegaConf

from seqmodels.callbacks import SaveRunConfig
from seqmodels.core.checkpoints import check_last_exists, check_resumable
from seqmodels.core.errors import errors_reported
from seqmodels.plumbing.cli import CONFIG_DIR, one_line_errors
from seqmodels.plumbing.config_checks import ConfigError, absolute_data_paths, check_config
from seqmodels.plumbing.quiet import silence_third_party_noise
from seqmodels.plumbing.tensorboard_view import (
    run_hparams,
    run_name,
    write_session_end,
    write_session_start,
)

log = logging.getLogger(__name__)

# Run folders (conf/hydra/default.yaml) end in the process id: two runs started in
# the same microsecond on one machine still get folders of their own.
OmegaConf.register_new_resolver("seqmodels.pid", os.getpid, replace=True)
silence_third_party_noise()  # deprecations inside Lightning and torch, Lightning's tips
# ... and start with what the run is (data, model, overrides): TensorBoard names runs by folder.
OmegaConf.register_new_resolver("seqmodels.run_name", run_name, replace=True)


def plain(cfg: Any) -> Any:
    """A resolved config as plain Python values (what checkpoints may hold)."""
    return OmegaConf.to_container(cfg, resolve=True) if isinstance(cfg, DictConfig) else cfg


def build_module(cfg: DictConfig, datamodule: L.LightningDataModule) -> L.LightningModule:
    """The task's LightningModule for ``cfg.model``, with vocabularies from ``datamodule``."""
    kwargs = plain(cfg.task.module)
    module_cls = get_class(kwargs.pop("_target_"))
    if getattr(datamodule, "kind", None) != module_cls.data_kind:
        raise ConfigError(
            f"task={cfg.task.name} needs {module_cls.data_kind} data, but data={cfg.data.name} "
            f"is {getattr(datamodule, 'kind', 'unknown')} data"
        )
    return module_cls(model=plain(cfg.model), **datamodule.vocab_kwargs(), **kwargs)


def instantiate_all(group: DictConfig | None) -> list[Any]:
    """Instantiate each entry of a group such as ``callbacks`` or ``logger`` (skipping nulls)."""
    if not group:
        return []
    return [instantiate(entry) for entry in group.values() if entry and "_target_" in entry]


def validation_is_off(cfg: DictConfig) -> bool:
    """``trainer.limit_val_batches=0``: the run trains without ever validating."""
    limit = cfg.trainer.get("limit_val_batches")
    return limit is not None and limit == 0


def without_validation(callbacks: list[Any]) -> list[Any]:
    """Callbacks for a run that never validates: no early stopping, the last checkpoint kept.

    (The task drops a schedule that steps on a validation metric, e.g. ReduceLROnPlateau.)
    """
    log.warning(
        "validation is off (trainer.limit_val_batches=0): early stopping and any learning-rate "
        "schedule on a validation metric are skipped; the checkpoint kept (and tested) is the "
        "last epoch's"
    )
    for callback in callbacks:
        if isinstance(callback, ModelCheckpoint):
            callback.monitor = None  # keep the latest instead of the best
    return [c for c in callbacks if not isinstance(c, EarlyStopping)]


def resume_file(cfg: DictConfig) -> str | None:
    """``cfg.ckpt_path`` when it names a file (not one of Lightning's ``last``, ``best``, ...)."""
    ckpt_path = cfg.get("ckpt_path")
    return None if not ckpt_path or ckpt_path in ("last", "best", "hpc", "registry") else ckpt_path


def warn_if_resuming_elsewhere(cfg: DictConfig) -> None:
    """Resuming into a new run folder starts a new TensorBoard run: say how to continue the old.

    Resuming into the same folder (``ckpt_path=last`` or a file in its ``checkpoints/``) finds
    files there by design, so Lightning's "Checkpoint directory ... exists and is not empty"
    is silenced for that folder only.
    """
    run_dir = Path(cfg.paths.output_dir).expanduser().resolve()
    ckpt_path = resume_file(cfg)
    if ckpt_path is None:
        if cfg.get("ckpt_path") != "last":
            return
        folder = run_dir / "checkpoints"
    else:
        folder = Path(ckpt_path).expanduser().resolve().parent
        if folder.name != "checkpoints":
            return  # not in a run's checkpoints/ folder: no old run to point to
    if folder.parent == run_dir:
        not_empty = f"Checkpoint directory {re.escape(str(folder))} exists and is not empty"
        warnings.filterwarnings("ignore", message=not_empty)
        return
    log.warning(
        "resuming from %s in a new run folder %s: TensorBoard shows a new run. To continue "
        "the same run, pass hydra.run.dir=%s ckpt_path=last",
        ckpt_path,
        cfg.paths.output_dir,
        folder.parent,
    )


def train(cfg: DictConfig) -> dict[str, float]:
    """Fit ``cfg``'s model on ``cfg``'s data, test the best checkpoint, return all metrics."""
    check_config(cfg)
    if cfg.get("ckpt_path") == "last":
        check_last_exists(cfg.paths.output_dir)
    absolute_data_paths(cfg)  # before the config goes into the checkpoints
    if cfg.get("num_threads"):
        torch.set_num_threads(cfg.num_threads)
    if cfg.get("seed") is not None:
        L.seed_everything(cfg.seed, workers=True, verbose=False)

    datamodule: L.LightningDataModule = instantiate(cfg.data)
    datamodule.prepare_data()
    datamodule.setup("fit")
    module = build_module(cfg, datamodule)
    config = plain(cfg)
    if (ckpt_path := resume_file(cfg)) is not None:  # before the run folder's logs are touched
        check_resumable(ckpt_path, module, config)
    # Every checkpoint carries the resolved config, so scripts/eval.py needs only the file.
    callbacks = [*instantiate_all(cfg.get("callbacks")), SaveRunConfig(config)]
    loggers = instantiate_all(cfg.get("logger"))
    if not loggers:  # nothing to log the learning rate to (Lightning refuses the monitor then)
        callbacks = [c for c in callbacks if not isinstance(c, LearningRateMonitor)]
    if validation_is_off(cfg):
        callbacks = without_validation(callbacks)
    trainer: L.Trainer = instantiate(cfg.trainer, callbacks=callbacks, logger=loggers or False)

    warn_if_resuming_elsewhere(cfg)
    for logger in trainer.loggers:  # written to hparams.yaml at the first save
        logger.log_hyperparams(config)
    start_hparams_session(trainer, cfg, config)
    trainer.fit(module, datamodule=datamodule, ckpt_path=cfg.get("ckpt_path"))
    metrics = {k: float(v) for k, v in trainer.callback_metrics.items()}
    checkpointer = trainer.checkpoint_callback
    if checkpointer is not None and getattr(checkpointer, "best_model_score", None) is not None:
        # The main val metric is reported for the checkpoint that is tested: the best epoch's.
        metrics[checkpointer.monitor] = float(checkpointer.best_model_score)

    if cfg.get("test") and not trainer.interrupted:
        best = trainer.checkpoint_callback.best_model_path if trainer.checkpoint_callback else ""
        if not best:
            log.warning("no best checkpoint was saved; testing the current weights")
        # Not Lightning's table: it repeats every epoch-level value under each DataLoader (the
        # char LM's two test protocols), so one line of our own names each metric instead.
        trainer.test(
            module, datamodule=datamodule, ckpt_path=best or None, weights_only=True, verbose=False
        )
        metrics |= {k: float(v) for k, v in trainer.callback_metrics.items()}
        log.info("best checkpoint: %s", best or "(none)")
        log.info("test metrics: %s", format_test_metrics(metrics))

    log_final_metrics(trainer, metrics)
    return metrics


def tensorboard_dirs(trainer: L.Trainer) -> list[str]:
    """The TensorBoard run folders this process writes (none on DDP ranks other than 0)."""
    # Before fit a DDP trainer does not know its rank yet; rank_zero_only read it from the
    # environment the launcher set.
    if not trainer.is_global_zero or getattr(rank_zero_only, "rank", 0) != 0:
        return []
    return [lg.log_dir for lg in trainer.loggers if isinstance(lg, TensorBoardLogger)]


def start_hparams_session(trainer: L.Trainer, cfg: DictConfig, config: dict) -> None:
    """TensorBoard's HPARAMS row for this run, written before training (so a run that stops
    early is listed too), and the Custom Scalars layout (see
    seqmodels.plumbing.tensorboard_view)."""
    overrides = HydraConfig.get().overrides.task if HydraConfig.initialized() else []
    for log_dir in tensorboard_dirs(trainer):
        write_session_start(log_dir, run_hparams(config, list(overrides)), cfg.task.monitor)


# What a metric's name does not say, printed beside the test metrics.
METRIC_NOTES = {
    "test/loss_windowed": "loss, bpc and ppl stream the test text with carried state; "
    "loss_windowed averages independent windows from a zero state",
}


def format_test_metrics(metrics: dict[str, float]) -> str:
    """``test/f1=91.2345  test/loss=0.1234 ...`` and any notes on those metrics, one line."""
    tested = {k: v for k, v in metrics.items() if k.startswith("test/")}
    notes = [note for name, note in METRIC_NOTES.items() if name in tested]
    line = "  ".join(f"{k}={v:.4f}" for k, v in tested.items())
    return line + "".join(f" ({note})" for note in notes)


def log_final_metrics(trainer: L.Trainer, metrics: dict[str, float]) -> None:
    """TensorBoard's HPARAMS row gets the final val and test metrics; every logger saves."""
    final = {k: v for k, v in metrics.items() if k.startswith(("val/", "test/"))}
    for log_dir in tensorboard_dirs(trainer):
        # In the run's hparams/ sub-run at the last step: written into the curves' run at step
        # 0 (as Lightning's log_hyperparams does), they hid every earlier val/* point.
        write_session_end(log_dir, final, trainer.global_step, finished=not trainer.interrupted)
    for logger in trainer.loggers:
        logger.save()


@one_line_errors
@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="train")
def main(cfg: DictConfig) -> float | None:
    """``python scripts/train.py [overrides]``; returns the optimized metric for sweepers.

    Expected errors (:mod:`seqmodels.core.errors`) print their message on one line and exit 1.
    """
    with errors_reported(log):
        metrics = train(cfg)
        name = cfg.get("optimized_metric")
        if name and name not in metrics and not any(k.startswith("val/") for k in metrics):
            log.warning("%s: the run never validated, so there is no value to return", name)
            return None
        if name and name not in metrics:
            raise ConfigError(
                f"optimized_metric={name} is not a metric of this run; it has: "
                + ", ".join(sorted(metrics))
            )
    return metrics.get(name) if name else None
