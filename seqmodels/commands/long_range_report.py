"""Figures for "Why LSTMs": the long-range sweep (metric vs length) and gradient-flow curves."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import yaml
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import NullLocator
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from seqmodels.core.errors import UserError

MODEL_ORDER = ("rnn", "gru", "lstm", "hand_lstm", "bilstm", "hand_bilstm")


def last_scalar(tensorboard_dir: Path, tag: str) -> float | None:
    """The last value of ``tag`` in a run's TensorBoard event files (None if never logged)."""
    value = None
    for event_file in sorted(tensorboard_dir.glob("events.out.tfevents.*")):
        acc = EventAccumulator(str(event_file), size_guidance={"scalars": 0})
        acc.Reload()
        if tag in acc.Tags()["scalars"]:
            value = acc.Scalars(tag)[-1].value
    return value


def collect_sweep(sweep_dir: Path, metric: str = "test/mse") -> list[dict]:
    """One row per finished job of a multirun folder: ``model``, ``length``, ``metric``."""
    rows = []
    for config_file in sorted(sweep_dir.glob("*/.hydra/config.yaml")):
        job = config_file.parent.parent
        config = yaml.safe_load(config_file.read_text())
        value = last_scalar(job / "tensorboard", metric)
        if value is None:  # unfinished or failed job
            continue
        rows.append(
            {"model": config["model"]["name"], "length": config["data"]["length"], metric: value}
        )
    if not rows:
        raise UserError(f"no finished job with a {metric} value under {sweep_dir}")
    return rows


def _save(fig: Figure, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    FigureCanvasAgg(fig)
    fig.tight_layout()
    fig.savefig(path, dpi=fig.dpi)


def plot_sweep(
    rows: list[dict],
    metric: str,
    path: Path,
    chance: float | None = None,
    title: str = "Adding problem: test MSE after training",
) -> None:
    """``metric`` against sequence length, one line per model; a PNG at ``path``.

    Errors (MSE, losses) on a log scale, accuracies (a metric ending in ``acc``) on a linear
    one; hand_lstm is dashed, so it stays visible where it lies on top of lstm.
    """
    fig = Figure(figsize=(5.5, 3.6), dpi=90)
    ax = fig.add_subplot()
    models = sorted({r["model"] for r in rows}, key=lambda m: (MODEL_ORDER + (m,)).index(m))
    for model in models:
        points = sorted((r["length"], r[metric]) for r in rows if r["model"] == model)
        style = "--" if model.startswith("hand") else "-"
        ax.plot(*zip(*points), marker="o", linestyle=style, label=model)
    if chance is not None:
        ax.axhline(chance, color="gray", linestyle=":", label=f"chance ({chance:.3g})")
    ax.set_xscale("log")
    ax.set_yscale("linear" if metric.endswith("acc") else "log")
    lengths = sorted({r["length"] for r in rows})
    ax.xaxis.set_minor_locator(NullLocator())
    ax.set_xticks(lengths, [str(n) for n in lengths])
    ax.set_xlabel("sequence length")
    ax.set_ylabel(metric)
    ax.set_title(title, fontsize=9)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    _save(fig, path)


def read_curves(run_dir: Path) -> list[dict]:
    """Every gradient-flow measurement a run saved (``<run dir>/grad_flow.jsonl``)."""
    file = run_dir / "grad_flow.jsonl"
    if not file.is_file():
        raise UserError(f"{file} not found: was the run made with callbacks.grad_flow on?")
    return [json.loads(line) for line in file.read_text().splitlines() if line.strip()]


def plot_grad_flow(runs: dict[str, Path], path: Path, curve: str = "inputs") -> None:
    """Per run (label -> run folder): the first (dashed) and last (solid) measured curve of
    ``curve`` (inputs, hidden, cell), log-scale norm against distance; a PNG at ``path``."""
    fig = Figure(figsize=(5.5, 3.6), dpi=90)
    ax = fig.add_subplot()
    for n, (label, run_dir) in enumerate(runs.items()):
        measured = read_curves(run_dir)
        color = f"C{n}"
        for record, style in ((measured[0], "--"), (measured[-1], "-")):
            values = np.asarray(record[curve])
            ks = np.arange(len(values))
            keep = values > 0
            ax.semilogy(
                ks[keep], values[keep], style, color=color, label=f"{label}, step {record['step']}"
            )
    ax.set_xlabel("distance k (steps before the scored step)")
    ax.set_ylabel(f"mean ||dL/d{'x' if curve == 'inputs' else curve}_(T-k)||")
    ax.set_title("Gradient flow through time", fontsize=10)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7, ncol=2)
    _save(fig, path)
