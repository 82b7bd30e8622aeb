"""MLflow and Weights & Biases beside TensorBoard: Lightning's loggers, each run named after
its run folder, as TensorBoard names it (the folder's path is in the logged config,
``paths.output_dir``).

Configs: ``conf/logger/mlflow.yaml`` and ``wandb.yaml``; the packages are the
``trackers`` extra (``pip install 'seqmodels[trackers]'``).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from lightning.pytorch.loggers import MLFlowLogger, WandbLogger

from seqmodels.core.errors import ConfigError


def _require(package: str, logger: str) -> None:
    try:
        __import__(package)
    except ImportError:
        raise ConfigError(
            f"logger={logger} needs the {package} package: pip install 'seqmodels[trackers]' "
            f"(or pip install {package})"
        ) from None


NOT_FOLDERS = ("databricks", "databricks-uc")  # MLflow URIs without a scheme (uc: MLflow says)


def mlflow_logger(
    run_dir: str,
    tracking_uri: str | None,
    experiment_name: str,
    run_name: str | None = None,
    **kwargs: Any,
) -> MLFlowLogger:
    """Lightning's :class:`MLFlowLogger` on ``tracking_uri`` (a folder, plain or as a ``file:``
    URI, a server, ``databricks``; None: ``MLFLOW_TRACKING_URI``, else ``./mlruns``).

    MLflow 3 refuses a local ``file:`` store unless ``MLFLOW_ALLOW_FILE_STORE`` is set (it
    steers to a database). The file store needs no database set-up and takes the parallel jobs
    of a sweep, so a folder opts in (``mlflow ui`` on it needs the same variable); a plain path
    is made an absolute ``file:`` URI first.
    """
    _require("mlflow", "mlflow")
    if tracking_uri is None:  # MLflow's own default: MLFLOW_TRACKING_URI, else ./mlruns
        tracking_uri = os.environ.get("MLFLOW_TRACKING_URI") or "file:./mlruns"
    tracking_uri = str(tracking_uri)
    scheme = urlparse(tracking_uri).scheme
    # A plain folder (/tmp/mlruns, mlruns, ~/mlruns; C:\\... on Windows); MLflow's scheme-less
    # words for Databricks are no folders.
    if len(scheme) <= 1 and tracking_uri not in NOT_FOLDERS:
        tracking_uri = Path(tracking_uri).expanduser().resolve().as_uri()
    if tracking_uri.startswith("file:"):
        os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
    return MLFlowLogger(
        experiment_name=experiment_name,
        run_name=run_name or Path(run_dir).name,
        tracking_uri=tracking_uri,
        **kwargs,
    )


def wandb_logger(run_dir: str, name: str | None = None, **kwargs: Any) -> WandbLogger:
    """Lightning's :class:`WandbLogger` with its files in ``<run_dir>/wandb`` (offline runs:
    ``wandb sync <run_dir>/wandb/offline-run-*`` uploads them later)."""
    _require("wandb", "wandb")
    logger = WandbLogger(name=name or Path(run_dir).name, save_dir=run_dir, **kwargs)
    # Lightning passes anonymous=None to wandb.init, which W&B (0.31 here) answers at every run
    # with "The anonymous setting has no effect": leave the setting out instead.
    init_kwargs = getattr(logger, "_wandb_init", {})
    if init_kwargs.get("anonymous", "set") is None:
        del init_kwargs["anonymous"]
    return logger
