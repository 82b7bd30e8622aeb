"""What every entry point shares: one-line errors, the checkpoint, device and threads options.

``scripts/train.py``, ``eval.py``, ``generate.py`` and ``tag.py`` (and their ``seqmodels-*``
console scripts) are ``hydra.main`` functions wrapped in :func:`one_line_errors`.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf

from seqmodels.core.errors import (
    ONE_LINE_MARKER,
    CheckpointError,
    ConfigError,
    error_message,
    full_errors_wanted,
    print_error,
)


def config_dir() -> Path:
    """The Hydra config folder: ``seqmodels/conf`` inside an installed wheel, else the
    checkout's top-level ``conf/`` (a source checkout or an editable install)."""
    package = Path(__file__).resolve().parents[1]
    shipped = package / "conf"
    return shipped if (shipped / "train.yaml").is_file() else package.parent / "conf"


CONFIG_DIR = str(config_dir())


def one_line_errors(hydra_main: Callable[..., Any]) -> Callable[..., Any]:
    """``hydra_main`` (a ``hydra.main`` function) with every expected error on one line, exit 1.

    Hydra reports the errors of composing the config (an unknown group option or key, an
    override that does not parse) itself, before the task function runs, in several lines.
    With ``HYDRA_FULL_ERROR=1`` it hands them on instead; this sets it for the call and prints
    an expected error as ``error: <message>`` (:func:`seqmodels.core.errors.error_message`). A
    bug keeps its traceback, and a user's own ``HYDRA_FULL_ERROR=1`` leaves Hydra as it is.
    """

    @functools.wraps(hydra_main)
    def entry(*args: Any, **kwargs: Any) -> Any:
        if args or kwargs or full_errors_wanted():  # in-process call with a config, or tracebacks
            return hydra_main(*args, **kwargs)
        saved = {k: os.environ.get(k) for k in ("HYDRA_FULL_ERROR", ONE_LINE_MARKER)}
        os.environ.update({"HYDRA_FULL_ERROR": "1", ONE_LINE_MARKER: "1"})
        try:
            return hydra_main()
        except Exception as err:
            message = error_message(err)
            if message is None:
                raise
            print_error(message)
            raise SystemExit(1) from None
        finally:
            for key, value in saved.items():
                if value is None:
                    os.environ.pop(key, None)
                else:
                    os.environ[key] = value

    return entry


def check_ckpt_path(cfg: DictConfig, what: str) -> None:
    """``cfg.ckpt_path`` is given and is a file; ``what`` says which checkpoint the script takes."""
    if OmegaConf.is_missing(cfg, "ckpt_path"):
        raise ConfigError(
            f"ckpt_path is required: {what}, e.g. ckpt_path=outputs/<task>/runs/<run>/checkpoints/"
            "last.ckpt"
        )
    path = Path(str(cfg.ckpt_path)).expanduser()
    if path.is_dir():
        found = sorted(path.glob("*.ckpt")) or sorted(path.glob("checkpoints/*.ckpt"))
        hint = f", e.g. ckpt_path={found[-1]}" if found else ""
        raise CheckpointError(f"ckpt_path={path} is a folder; give a checkpoint file{hint}")
    if not path.is_file():
        raise CheckpointError(f"ckpt_path={path} does not exist; give {what}")


def check_device(device: Any) -> None:
    """``device`` names a torch device this machine has (cpu, or cuda when a GPU is here)."""
    try:
        found = torch.device(device)
    except (RuntimeError, TypeError, ValueError):
        raise ConfigError(
            f"device must be a torch device such as cpu or cuda, got {device!r}"
        ) from None
    if found.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device={device}: no CUDA GPU is available here; use device=cpu")
    if found.type == "cuda" and (found.index or 0) >= torch.cuda.device_count():
        count = torch.cuda.device_count()
        raise ConfigError(f"device={device}: this machine has {count} CUDA GPU(s)")
    if found.type == "mps" and not torch.backends.mps.is_available():
        raise ConfigError(f"device={device}: MPS is not available here; use device=cpu")


def check_num_threads(threads: Any) -> None:
    """``num_threads`` is a whole number >= 1, or null (torch's default)."""
    if threads is not None and (
        not isinstance(threads, int) or isinstance(threads, bool) or threads < 1
    ):
        raise ConfigError(
            f"num_threads must be a whole number >= 1 or null (torch's default), got {threads!r}"
        )
