"""Refuse configurations that cannot work, before any data is read or any file written."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from hydra.utils import to_absolute_path
from omegaconf import DictConfig, OmegaConf

from seqmodels.core.errors import ConfigError
from seqmodels.data.conll import check_conll_options
from seqmodels.layers.encoders import CELLS, OTHER_CELLS
from seqmodels.tasks.char_lm import require_causal

__all__ = ["ConfigError", "absolute_data_paths", "check_config"]


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def positive_int(option: str, value: Any, minimum: int = 1) -> None:
    if not _is_int(value) or value < minimum:
        kind = "a positive integer" if minimum == 1 else f"an integer >= {minimum}"
        raise ConfigError(f"{option} must be {kind}, got {value!r}")


def number_in(option: str, value: Any, low: float, high: float, open_low: bool = False) -> None:
    """``low <= value < high`` (``low < value`` if ``open_low``)."""
    above = low < value if open_low else low <= value
    if not (_is_number(value) and above and value < high):
        interval = f"{'(' if open_low else '['}{low}, {high})"
        raise ConfigError(f"{option} must be a number in {interval}, got {value!r}")


def _check_model(model: DictConfig) -> None:
    cell = model.get("cell")
    if cell not in CELLS + OTHER_CELLS:
        cells = ", ".join(CELLS + OTHER_CELLS)
        raise ConfigError(f"model.cell must be one of {cells}, got {cell!r}")
    for option in ("hidden_size", "num_layers", "embedding_dim"):
        positive_int(f"model.{option}", model.get(option))
    number_in("model.dropout", model.get("dropout", 0.0), 0.0, 1.0)
    if model.get("nonlinearity", "tanh") not in ("tanh", "relu"):
        raise ConfigError(f"model.nonlinearity must be tanh or relu, got {model.nonlinearity!r}")


def _check_data(data: DictConfig) -> None:
    for option in ("batch_size", "eval_batch_size", "min_freq", "block_size"):
        if option in data:
            positive_int(f"data.{option}", data[option])
    if "num_workers" in data:
        positive_int("data.num_workers", data.num_workers, minimum=0)
    if "val_fraction" in data:
        number_in("data.val_fraction", data.val_fraction, 0.0, 1.0, open_low=True)
    if str(data.get("_target_", "")).endswith("ConllDataModule"):
        check_conll_options(data.get("path"), data.get("scheme", "BIO"), data.get("encoding"))


def _check_trainer(trainer: DictConfig) -> None:
    for option in ("max_epochs", "min_epochs"):
        value = trainer.get(option)
        if value is not None:
            positive_int(f"trainer.{option}", value, minimum=1 if option == "max_epochs" else 0)
    clip = trainer.get("gradient_clip_val")
    if clip is not None and not (_is_number(clip) and clip >= 0):
        raise ConfigError(f"trainer.gradient_clip_val must be a number >= 0, got {clip!r}")


def _check_optimizer(module: DictConfig) -> None:
    lr = (module.get("optimizer") or {}).get("lr")
    if lr is not None and not (_is_number(lr) and lr > 0):
        raise ConfigError(f"task.module.optimizer.lr must be a positive number, got {lr!r}")


def check_config(cfg: DictConfig) -> None:
    """Every number a run needs, and the model x task combination; the message names the option.

    Each module checks its own arguments too; this runs first so nothing is read or written.
    """
    seed = cfg.get("seed")
    if seed is not None and not _is_int(seed):
        raise ConfigError(f"seed must be an integer or null, got {seed!r}")
    _check_model(cfg.model)
    if cfg.task.name == "char_lm":
        require_causal(OmegaConf.to_container(cfg.model))
    _check_data(cfg.data)
    _check_trainer(cfg.trainer)
    _check_optimizer(cfg.task.module)


def absolute_data_paths(cfg: DictConfig) -> None:
    """``data.path`` (a path or a list) and a ``data.dataset`` that is a local folder, made
    absolute against the folder train.py was started in (Hydra's original cwd, even with
    ``hydra.job.chdir=true``), so the config a checkpoint carries finds the data from any folder
    (``scripts/eval.py`` rebuilds the split from it). A hub id (``tner/wnut2017``) stays as it is.
    """
    data = cfg.get("data")
    if data is None:
        return

    def absolute(path: Any) -> str:
        return to_absolute_path(str(Path(str(path)).expanduser()))

    path = data.get("path")
    if isinstance(path, str):
        data.path = absolute(path)
    elif OmegaConf.is_list(path):
        data.path = [absolute(p) for p in path]
    dataset = data.get("dataset")
    if isinstance(dataset, str) and dataset:
        local = Path(to_absolute_path(str(Path(dataset).expanduser())))
        if local.exists():
            data.dataset = str(local)
