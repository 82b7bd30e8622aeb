"""What a run prints: a progress bar without the logger's version, a summary without zero FLOPs."""

from __future__ import annotations

import sys
import time
from typing import Any

import lightning as L
from lightning.pytorch.callbacks import RichModelSummary, TQDMProgressBar
from lightning.pytorch.utilities.model_summary import (
    get_formatted_model_size,
    get_human_readable_count,
)


class ProgressBar(TQDMProgressBar):
    """Lightning's tqdm bar showing the metrics logged with ``prog_bar=True`` and nothing else.

    Lightning adds ``v_num``, the logger's version: empty for this project's TensorBoard runs
    (the run folder is the version) and an MLflow or W&B run id otherwise, which says nothing.
    """

    def get_metrics(self, trainer: L.Trainer, pl_module: L.LightningModule) -> dict[str, Any]:
        items = super().get_metrics(trainer, pl_module)
        items.pop("v_num", None)
        return items

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        """Through a pipe or into a file (stdout not a terminal) a bar's every refresh is a
        line of the log: no bars then, one line per training epoch instead."""
        super().setup(trainer, pl_module, stage)
        self._lines = not sys.stdout.isatty()
        if self._lines:
            self.disable()
        self._started = time.monotonic()

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        super().on_train_epoch_end(trainer, pl_module)
        if not getattr(self, "_lines", False) or not trainer.is_global_zero:
            return
        metrics = self.get_metrics(trainer, pl_module)
        shown = "  ".join(
            f"{k}={v:.4f}" if isinstance(v, float) else f"{k}={v}" for k, v in metrics.items()
        )
        total = trainer.max_epochs if trainer.max_epochs and trainer.max_epochs > 0 else "?"
        took = time.monotonic() - self._started
        print(f"epoch {trainer.current_epoch}/{total}: {shown}  ({took:.0f} s)", flush=True)

    def on_exception(
        self, trainer: L.Trainer, pl_module: L.LightningModule, exception: BaseException
    ) -> None:
        """Close the bars, so that the error printed next starts a line of its own."""
        bars = (
            self._val_progress_bar,
            self._test_progress_bar,
            self._predict_progress_bar,
            self._train_progress_bar,
        )
        for bar in bars:
            if bar is not None:
                bar.close()


class ModelSummary(RichModelSummary):
    """Lightning's model summary table, without its FLOPs column when no FLOPs were counted.

    Lightning counts FLOPs only for a module with an ``example_input_array`` (the tasks have
    none: their inputs differ by data), and otherwise prints a column of zeros and
    ``Total FLOPs: 0``.
    """

    @staticmethod
    def summarize(
        summary_data: list[tuple[str, list[str]]],
        total_parameters: int,
        trainable_parameters: int,
        model_size: float,
        total_training_modes: dict[str, int],
        total_flops: int,
        **summarize_kwargs: Any,
    ) -> None:
        if total_flops:
            RichModelSummary.summarize(
                summary_data,
                total_parameters,
                trainable_parameters,
                model_size,
                total_training_modes,
                total_flops,
                **summarize_kwargs,
            )
            return
        from rich import get_console
        from rich.table import Table

        columns = [(name, values) for name, values in summary_data if name != "FLOPs"]
        table = Table(header_style=summarize_kwargs.get("header_style", "bold magenta"))
        for name, _ in columns:
            if name.strip():
                right = name not in ("Name", "Type", "Mode")
                table.add_column(name, justify="right" if right else "left")
            else:  # the row number
                table.add_column(" ", style="dim")
        for row in zip(*(values for _, values in columns)):
            table.add_row(*row)
        console = get_console()
        console.print(table)
        frozen = total_parameters - trainable_parameters
        for label, value in (
            ("Trainable params", get_human_readable_count(trainable_parameters).strip()),
            ("Non-trainable params", get_human_readable_count(frozen).strip()),
            ("Total params", get_human_readable_count(total_parameters).strip()),
            ("Total estimated model params size (MB)", get_formatted_model_size(model_size)),
            ("Modules in train mode", total_training_modes["train"]),
            ("Modules in eval mode", total_training_modes["eval"]),
        ):
            console.print(f"[bold]{label}[/]: {value}", highlight=False)
