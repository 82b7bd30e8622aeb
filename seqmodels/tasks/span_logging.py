"""The slot tagger's test-time span report: per-type scores to the loggers and the run folder.

At the end of a test epoch, each type's precision/recall/F1 goes to every logger as
``test/f1_per_type/<type>`` (also ``precision_per_type``/``recall_per_type``), the table as
text to TensorBoard (``test/per_type``), and ``test_span_report.txt``/``.json`` (the table
plus the most frequent span errors with examples) into the run folder. The scores come from
the synced :class:`~seqmodels.metrics.SpanF1` counts; the span errors from the sentences this
process tested (all of them on one device).
"""

from __future__ import annotations

import logging
from typing import Any

import lightning as L
from lightning.pytorch.loggers import TensorBoardLogger

from seqmodels.metrics import SpanF1
from seqmodels.metrics.span_report import span_errors, write_report

log = logging.getLogger(__name__)

REPORT_NAME = "test_span_report"


def markdown_table(per_type: dict[str, dict[str, Any]], micro: dict[str, Any]) -> str:
    """The per-type table as markdown (TensorBoard's text tab renders it)."""
    rows = ["| type | precision | recall | F1 | support | predicted |", "|---|---|---|---|---|---|"]
    for name, s in [*per_type.items(), ("**micro avg**", micro)]:
        rows.append(
            f"| {name} | {s['precision']:.2f} | {s['recall']:.2f} | {s['f1']:.2f} "
            f"| {s['support']} | {s['predicted']} |"
        )
    return "\n".join(rows)


def log_test_span_report(
    module: L.LightningModule, metric: SpanF1, utterances: list[dict[str, list[str]]]
) -> None:
    """Per-type scalars and table to the loggers; the report files into the run folder."""
    trainer = module.trainer
    per_type, micro = metric.per_type(), metric.micro()
    scalars = {
        f"test/{name}_per_type/{kind}": float(row[name])
        for kind, row in per_type.items()
        for name in ("f1", "precision", "recall")
    }
    # Straight to the loggers, not self.log: dozens of per-type values would crowd the test
    # metrics train() prints and returns.
    for logger in trainer.loggers:
        logger.log_metrics(scalars, step=trainer.global_step)
        if isinstance(logger, TensorBoardLogger):
            text = markdown_table(per_type, micro)
            logger.experiment.add_text("test/per_type", text, trainer.global_step)
    if not trainer.is_global_zero:
        return
    report = {
        "tokens": sum(len(u["gold"]) for u in utterances),
        "per_type": per_type,
        "micro": micro,
        "errors": span_errors(utterances),
    }
    path = write_report(trainer.default_root_dir, report, REPORT_NAME, "test")
    log.info("%s", worst_types(per_type, path))


WORST_SHOWN = 5


def worst_types(per_type: dict[str, dict[str, Any]], path: Any) -> str:
    """One line for the terminal: the types with the lowest test F1 (among those in the gold
    test set; most frequent first on ties) and where the full table is. ATIS's 80-row table
    stays in the run folder and TensorBoard (``test/per_type``)."""
    gold = {kind: row for kind, row in per_type.items() if row.get("support", 0) > 0}
    worst = sorted(gold.items(), key=lambda kv: (kv[1]["f1"], -kv[1]["support"], kv[0]))
    shown = ", ".join(
        f"{kind} {row['f1']:.1f} ({row['support']})" for kind, row in worst[:WORST_SHOWN]
    )
    return (
        f"lowest test F1 of {len(gold)} types (F1, gold spans): {shown or 'none'}; every type "
        f"and the span errors: {path} (TensorBoard: test/per_type)"
    )
