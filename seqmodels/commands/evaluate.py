"""Test a checkpoint with nothing else given: ``python scripts/eval.py ckpt_path=...``.

Everything needed comes from the checkpoint: the task and data config from its ``config``
(written by :class:`seqmodels.callbacks.SaveRunConfig`), the model config and the vocabularies
from its ``hyper_parameters``. It is read with ``weights_only=True``, and the classes it names
are looked up among seqmodels' own (:mod:`seqmodels.plumbing.registry`): a checkpoint never chooses
what code runs.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import hydra
import lightning as L
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from seqmodels.commands.train import CONFIG_DIR, plain
from seqmodels.core.checkpoints import check_kind, load_weights, read_checkpoint
from seqmodels.core.errors import ConfigError, errors_reported
from seqmodels.metrics.span_report import format_table, span_report, write_report
from seqmodels.plumbing.cli import check_ckpt_path, one_line_errors
from seqmodels.plumbing.registry import data_class, init_kwargs, task_class

log = logging.getLogger(__name__)

SPLITS = ("test", "val")


def load_module(
    path: str | Path, data_kind: str | None = None
) -> tuple[L.LightningModule, dict[str, Any]]:
    """The task module saved at ``path`` (on the CPU) and the checkpoint's plain contents.

    For inference alone, :func:`seqmodels.nets.load_net` gives the network without Lightning.

    ``data_kind`` (``"text"``, ``"slot_filling"``) refuses a checkpoint of another task, naming
    the task it was trained for.
    """
    checkpoint = read_checkpoint(path)
    module_cls = task_class(checkpoint, path)
    check_kind(module_cls, checkpoint, path, data_kind)
    # Built from plain values by the project's own class, not by Lightning's load path
    # (which would follow instantiator hints stored in the file).
    module = module_cls(**init_kwargs(module_cls, checkpoint["hyper_parameters"]))
    load_weights(module, checkpoint, path)
    module.on_load_checkpoint(checkpoint)
    module.eval()
    return module, checkpoint


def vocab_kwargs(hparams: dict[str, Any]) -> dict[str, Any]:
    """The vocabularies in a task's hyperparameters, under the keyword its DataModule takes."""
    return {k: hparams[k] for k in ("vocab", "vocabs") if k in hparams}


def write_conll(path: Path, utterances: list[dict[str, list[str]]]) -> None:
    """One ``token gold predicted`` line per token, a blank line after each sentence."""
    with open(path, "w", encoding="utf-8") as f:
        for utt in utterances:
            for token, gold, pred in zip(utt["tokens"], utt["gold"], utt["predicted"]):
                f.write(f"{token} {gold} {pred}\n")
            f.write("\n")


def write_span_report(
    out_dir: Path, utterances: list[dict[str, list[str]]], split: str, title: str
) -> dict[str, Any]:
    """<split>_span_report.txt/.json: per-type scores and the most frequent span errors (the
    test step writes the same for split=test)."""
    report = span_report(utterances)
    path = write_report(out_dir, report, f"{split}_span_report", title)
    table = format_table(report["per_type"], report["micro"])
    log.info("per-type scores (span errors with examples in %s):\n%s", path, table)
    return report["per_type"]


def evaluate(cfg: DictConfig) -> dict[str, float]:
    """Test ``cfg.ckpt_path`` on ``cfg.split``; write metrics.json (+ predictions.conll)."""
    if cfg.split not in SPLITS:
        raise ConfigError(f"split must be one of {', '.join(SPLITS)}, got {cfg.split!r}")
    module, checkpoint = load_module(cfg.ckpt_path)
    run_cfg = checkpoint["config"]
    data_cfg = plain(OmegaConf.merge(run_cfg["data"], plain(cfg.get("data")) or {}))
    data_cls = data_class(data_cfg, cfg.ckpt_path)
    datamodule = data_cls(
        **init_kwargs(data_cls, data_cfg), **vocab_kwargs(checkpoint["hyper_parameters"])
    )
    datamodule.prepare_data()
    datamodule.setup("test")

    trainer: L.Trainer = instantiate(cfg.trainer)
    run = trainer.test if cfg.split == "test" else trainer.validate
    # One result dict per loader (the char LM has two); the metrics are epoch-level.
    results = {k: v for part in run(module, datamodule=datamodule) for k, v in part.items()}
    loader = datamodule.test_dataloader() if cfg.split == "test" else datamodule.val_dataloader()
    metrics = {k: float(v) for k, v in results.items()}

    out_dir = Path(cfg.paths.output_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    per_type = None
    if getattr(module, "data_kind", None) == "slot_filling":
        batches = trainer.predict(module, dataloaders=loader)
        utterances = [utt for batch in batches for utt in batch]
        write_conll(out_dir / "predictions.conll", utterances)
        per_type = write_span_report(
            out_dir, utterances, cfg.split, f"{cfg.split} of {cfg.ckpt_path}"
        )
    report = {
        "ckpt_path": str(Path(cfg.ckpt_path).expanduser().resolve()),
        "split": cfg.split,
        "task": run_cfg["task"]["name"],
        "data": run_cfg["data"]["name"],
        "model": run_cfg["model"].get("name"),
        "metrics": metrics,
    }
    if per_type is not None:
        report["per_type"] = per_type
    (out_dir / "metrics.json").write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    log.info("%s metrics of %s: %s", cfg.split, cfg.ckpt_path, json.dumps(metrics))
    log.info("wrote %s", out_dir / "metrics.json")
    return metrics


@one_line_errors
@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="eval")
def main(cfg: DictConfig) -> None:
    """``python scripts/eval.py ckpt_path=<checkpoint> [split=val]``."""
    with errors_reported(log):
        check_ckpt_path(cfg, "a checkpoint written by scripts/train.py")
        evaluate(cfg)
