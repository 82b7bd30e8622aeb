"""Gradient flow through time: how much the loss at one step feels the inputs k steps before.

Back-propagation through time multiplies one Jacobian per step, so in a plain RNN the
gradient of the loss at step T with respect to the input at step T - k shrinks (or explodes)
geometrically in k; an LSTM's additive cell state keeps it alive. This callback measures it
on the user's own run: ``mean_b ||dL_b/dx_{b, T_b - k}||`` against the distance ``k``, where
``x`` is what the encoder reads (the embeddings) and ``L_b`` the loss of sequence ``b`` at its
last step. Where it can (every model, via a step-by-step replay of the encoder with its own
weights), it also measures ``||dL/dh_{T-k}||`` and, for LSTMs, ``||dL/dc_{T-k}||`` of the top
layer's forward direction.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
from lightning.pytorch.loggers import TensorBoardLogger
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from torch import Tensor, nn
from torch.nn import functional as F

from seqmodels.core.errors import ConfigError
from seqmodels.layers.gates import unroll

LOGGED_DISTANCES = (1, 4, 16, 64)
# What the measurement needs from a task: the encoder's inputs [B, T, D], the lengths (None:
# all T) and the per-sequence loss [B] at its last step as a function of the encoder output.
Problem = tuple[Tensor, Tensor | None, Callable[[Tensor], Tensor]]


@dataclass
class FlowCurve:
    """Mean gradient norms at distances ``0 .. K-1`` from the scored step."""

    inputs: Tensor
    hidden: Tensor | None  # None: the encoder has no recurrent state (the Transformer)
    cell: Tensor | None = None

    def as_dict(self) -> dict[str, list[float]]:
        curves = {"inputs": self.inputs, "hidden": self.hidden, "cell": self.cell}
        return {k: v.tolist() for k, v in curves.items() if v is not None}


def by_distance(norms: Tensor, last: Tensor) -> Tensor:
    """``[B, T]`` per-step norms -> ``[max(last) + 1]``: the mean over sequences of the norm
    at ``last_b - k`` for each distance ``k`` (over the sequences long enough for it)."""
    distances = torch.arange(int(last.max()) + 1, device=norms.device)
    index = last.unsqueeze(1) - distances.unsqueeze(0)
    valid = index >= 0
    picked = norms.gather(1, index.clamp(min=0)) * valid
    return picked.sum(0) / valid.sum(0)


def gradient_flow(rnn: nn.Module, inputs: Tensor, lengths: Tensor | None, loss_of) -> FlowCurve:
    """Replay ``rnn`` step by step over ``inputs`` (no dropout, no random numbers), take the
    gradient of ``loss_of(output).sum()`` with respect to the inputs and the top layer's
    forward states, and average their norms by distance from each sequence's last step.

    Only ``inputs`` and the states get gradients: no parameter's ``.grad`` is touched.
    """
    inputs = inputs.detach().requires_grad_(True)
    last = (
        lengths.to(inputs.device) - 1
        if lengths is not None
        else torch.full((inputs.size(0),), inputs.size(1) - 1, device=inputs.device)
    )
    with torch.enable_grad():
        if hasattr(rnn, "unroll"):  # an encoder that replays itself (minGRU/LSTM, Transformer)
            replay = rnn.unroll(inputs, lengths, keep_gates=False)
        else:
            replay = unroll(rnn, inputs, lengths, keep_gates=False)
        top = (rnn.num_layers - 1, 0)
        hs, cs = replay.states.get(top, []), replay.cells.get(top, [])
        loss = loss_of(replay.output).sum()  # per-sequence losses: each b's own gradient
        grads = torch.autograd.grad(loss, [inputs, *hs, *cs], allow_unused=True)

    def stacked(parts: tuple[Tensor | None, ...], like: list[Tensor]) -> Tensor:
        return torch.stack(
            [torch.zeros_like(s) if g is None else g for g, s in zip(parts, like)], dim=1
        )

    d_inputs, T = grads[0], inputs.size(1)
    d_h = stacked(grads[1 : 1 + T], hs) if hs else None
    curve = FlowCurve(
        inputs=by_distance(d_inputs.norm(dim=-1), last),
        hidden=by_distance(d_h.norm(dim=-1), last) if hs else None,
    )
    if cs:
        curve.cell = by_distance(stacked(grads[1 + T :], cs).norm(dim=-1), last)
    return curve


def task_problem(module: L.LightningModule, batch: Any) -> Problem:
    """The encoder inputs, lengths and last-step loss of ``module``'s task for ``batch``.

    A task may define ``grad_flow_problem(batch)``; the char LM and slot filling are read
    here: the char LM's loss at the last character; slot filling's at each utterance's last
    tag (its intent reads the whole utterance through a max-pool, not one step).
    """
    if hasattr(module, "grad_flow_problem"):
        return module.grad_flow_problem(batch)
    from seqmodels.tasks import CharLM, SlotTagger

    if isinstance(module, CharLM):
        x, y = batch[0], batch[1]

        def lm_loss(states: Tensor) -> Tensor:
            return F.cross_entropy(module.head(states[:, -1]), y[:, -1], reduction="none")

        return module.embedding(x).detach(), None, lm_loss
    if isinstance(module, SlotTagger):
        lengths, tags = batch["lengths"], batch["tags"]
        rows, last = torch.arange(tags.size(0), device=tags.device), lengths.to(tags.device) - 1

        words = batch["words"]

        def tag_loss(states: Tensor) -> Tensor:
            # everything the tagger puts between its encoder and its tag scores (heads())
            tag_scores, _ = module.heads(states, words != 0)
            return F.cross_entropy(tag_scores[rows, last], tags[rows, last], reduction="none")

        # what the encoder reads: word embeddings (with char features, if the model has them)
        inputs = module.words_in(module.embedding(words), batch.get("chars"), batch.get("char_lm"))
        return inputs.detach(), lengths, tag_loss
    raise TypeError(f"no gradient-flow measurement for {type(module).__name__}")


def curve_image(curve: FlowCurve, title: str) -> np.ndarray:
    """The curves as an ``[H, W, 3]`` uint8 image: log-scale norm against distance."""
    fig = Figure(figsize=(5, 3.2), dpi=80)
    canvas = FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    for name, values in curve.as_dict().items():
        values = np.asarray(values)
        ks = np.arange(len(values))
        keep = values > 0
        ax.semilogy(ks[keep], values[keep], label=f"dL/d{name}")
    ax.set_xlabel("distance k (steps before the scored step)")
    ax.set_ylabel("mean gradient norm")
    ax.set_title(title, fontsize=10)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    canvas.draw()
    return np.asarray(canvas.buffer_rgba())[..., :3].copy()


class GradFlowLogger(L.Callback):
    """Every ``every_n_steps`` training steps (rank 0 only), measure :func:`gradient_flow` on
    the step's batch (its first ``max_batch`` sequences) before the step runs, and log
    ``grad_flow/k=<k>`` (inputs), ``grad_flow/hidden/k=<k>``, ``grad_flow/cell/k=<k>`` for
    k in 1, 4, 16, 64 (those the length allows), a ``grad_flow/curve`` image (TensorBoard),
    and, with ``save_curves``, every curve as a line of ``<run dir>/grad_flow.jsonl``.

    The measurement replays the encoder without dropout and draws no random numbers, and it
    differentiates only inputs and states, so the training step (its RNG, gradients and
    optimizer state) is exactly what it would have been without it. Between firings the
    cost is one modulo.
    """

    def __init__(
        self, every_n_steps: int = 200, max_batch: int = 32, save_curves: bool = True
    ) -> None:
        if not isinstance(every_n_steps, int) or every_n_steps < 1:
            raise ConfigError(
                "callbacks.grad_flow.every_n_steps must be a positive integer, "
                f"got {every_n_steps!r}"
            )
        if not isinstance(max_batch, int) or max_batch < 1:
            raise ConfigError(
                f"callbacks.grad_flow.max_batch must be a positive integer, got {max_batch!r}"
            )
        self.every_n_steps, self.max_batch, self.save_curves = every_n_steps, max_batch, save_curves
        self._last_step = -1

    def on_train_batch_start(
        self, trainer: L.Trainer, pl_module: L.LightningModule, batch: Any, batch_idx: int
    ) -> None:
        step = trainer.global_step
        if step % self.every_n_steps or not trainer.is_global_zero or step == self._last_step:
            return  # (the same step again: accumulating gradients over several batches)
        self._last_step = step
        curve = self.measure(pl_module, batch)
        scalars = {}
        for name, values in curve.as_dict().items():
            prefix = "grad_flow" if name == "inputs" else f"grad_flow/{name}"
            scalars |= {f"{prefix}/k={k}": values[k] for k in LOGGED_DISTANCES if k < len(values)}
        cell = getattr(pl_module.encoder, "cell", None) or type(pl_module.encoder.rnn).__name__
        for logger in trainer.loggers:
            logger.log_metrics(scalars, step=step)
            if isinstance(logger, TensorBoardLogger):
                image = curve_image(curve, f"{cell}, step {step}")
                logger.experiment.add_image("grad_flow/curve", image, step, dataformats="HWC")
        if self.save_curves and trainer.default_root_dir:
            line = {"step": step, "model": cell, **curve.as_dict()}
            run_dir = Path(trainer.default_root_dir)
            run_dir.mkdir(parents=True, exist_ok=True)  # (with no logger, nothing made it yet)
            with open(run_dir / "grad_flow.jsonl", "a") as file:
                file.write(json.dumps(line) + "\n")

    def measure(self, pl_module: L.LightningModule, batch: Any) -> FlowCurve:
        """:func:`gradient_flow` of ``pl_module``'s encoder on the first sequences of ``batch``."""
        inputs, lengths, loss_of = task_problem(pl_module, first_rows(batch, self.max_batch))
        encoder = pl_module.encoder
        replayed = encoder if hasattr(encoder, "unroll") else encoder.rnn
        return gradient_flow(replayed, inputs, lengths, loss_of)


def first_rows(batch: Any, n: int) -> Any:
    """``batch`` (tensors, lists, tuples and dicts of them) cut to its first ``n`` sequences."""
    if isinstance(batch, dict):
        return {key: first_rows(value, n) for key, value in batch.items()}
    if isinstance(batch, tuple) or (isinstance(batch, list) and batch and is_tensors(batch)):
        return type(batch)(first_rows(value, n) for value in batch)  # a collated (x, y) pair
    if isinstance(batch, (Tensor, list)):
        return batch[:n]  # a tensor, or a per-sequence list (tokens, gold tags)
    return batch


def is_tensors(items: list) -> bool:
    return all(isinstance(item, (Tensor, dict, tuple)) for item in items)
