"""Third-party messages a user of this framework cannot act on, silenced where they arise.

Each filter names one exact message and the module that emits it, so every other warning
(including new ones from the same libraries) still reaches the terminal.
"""

from __future__ import annotations

import logging
import warnings


class _DropLightningTips(logging.Filter):
    """Lightning advertises its cloud products (litlogger, litmodels) at every run start, and
    says it skips its default model summary when the config brings one (callbacks/default.yaml:
    the same table without a column of zero FLOPs)."""

    DROPPED = ("💡 Tip:", "Trainer already configured with model summary callbacks")

    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith(self.DROPPED)


_TIPS = _DropLightningTips()


def silence_third_party_noise() -> None:
    """Install the filters (idempotent); :mod:`seqmodels.commands.train` does so on import."""
    # Lightning's own pytree helper builds a LeafSpec, which torch >= 2.10 deprecates: a
    # Lightning internal, printed at the first validation of every run.
    warnings.filterwarnings(
        "ignore",
        message=r"`isinstance\(treespec, LeafSpec\)` is deprecated",
        category=FutureWarning,
        module=r"lightning\.pytorch\.utilities\._pytree",
    )
    # trainer=ddp passes broadcast_buffers=False on purpose (conf/trainer/ddp.yaml):
    # torch's suggested forward_sync_buffers=False still syncs at init and does not exist on
    # older torch. DDP warns in the frame of Lightning's strategy, which constructs it.
    warnings.filterwarnings(
        "ignore",
        message=r"`broadcast_buffers` is deprecated",
        category=FutureWarning,
        module=r"lightning\.(pytorch|fabric)\.strategies\.ddp",
    )
    # MLflow metric names may not hold "=": Lightning's MLFlowLogger stores grad_flow/k=16 as
    # grad_flow/k16 (TensorBoard keeps the name) and warns for each such name.
    warnings.filterwarnings(
        "ignore",
        message=r"MLFlow only allows .* Replacing grad_flow/\S*k=\d+ with grad_flow/\S*k\d+\.$",
        category=RuntimeWarning,
    )
    # A short run (limit_train_batches, a small set) has fewer batches than the logging
    # interval; train/loss is still logged at the epoch's end, so there is nothing to act on.
    warnings.filterwarnings(
        "ignore",
        message=r"The number of training batches \(\d+\) is smaller than the logging interval",
    )
    # Optuna's sweeper imports alembic (for database storages this project does not use),
    # whose plugin registry logs "setup plugin alembic...." seven times at INFO, which
    # Hydra's sweeper logging prints as [HYDRA] lines.
    logging.getLogger("alembic.runtime.plugins").setLevel(logging.WARNING)
    # Lightning's rank-zero logger also prints "GPU available", checkpoint paths and the
    # like; only its advertisements are dropped.
    logging.getLogger("lightning.pytorch.utilities.rank_zero").addFilter(_TIPS)
