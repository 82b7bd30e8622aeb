"""The native min-RNN layer as the encoder runs it in float32/float64 on a CPU: the product
``x W^T`` and the C scan of :mod:`seqmodels.layers.native_scan` block by block of rows, so the
scan reads each block of pre-activations while it is still in cache.

- :class:`ProjectedMinRNN` (training): the pre-activations go to a :class:`Workspace` buffer
  kept from one step to the next, which the backward reads by blocks from the last row.
- :func:`infer_stack` (no gradient): a whole stack block by block of rows, each row also
  getting the residual add and the next LayerNorm, so only its input and output pass over
  memory.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor
from torch.autograd.function import once_differentiable

from seqmodels.layers.native_scan import check_shapes, kernel

# About this many bytes of pre-activations per block of rows: the product writes a block and the
# scan reads it while it is still in the core's cache (docs/new-models.md measures the sizes).
BLOCK_BYTES = 1 << 19


class Workspace:
    """The pre-activation buffer of one layer-direction, kept from one training step to the next.

    Training saves the pre-activations for the backward pass, so they need a whole
    ``[B*T, K*H]`` buffer; at long lengths that is tens of MB, which glibc hands out as fresh
    pages from the kernel on every call, and faulting them in took about as long as the product
    that fills them. :meth:`take` gives a view of the same storage back (grown when a batch
    needs more) once no view of it is alive: its backward has run or its graph was dropped
    (a saved-tensor hook that keeps the view, ``save_on_cpu`` or ``torch.utils.checkpoint``,
    keeps it too). Not part of the model's state: copies, pickles and a model put in ``eval()``
    start empty."""

    def __init__(self) -> None:
        self.buffer: Tensor | None = None

    def take(self, shape: tuple[int, int], dtype: torch.dtype) -> Tensor:
        size = shape[0] * shape[1]
        buf = self.buffer
        if buf is None or buf.dtype != dtype or buf.numel() < size or not _unheld(buf):
            buf = self.buffer = torch.empty(size, dtype=dtype)
        return buf[:size].view(shape)

    def __deepcopy__(self, memo: dict) -> Workspace:
        return Workspace()

    def __getstate__(self) -> dict:
        return {"buffer": None}


def _unheld(buf: Tensor) -> bool:
    """Whether ``buf``'s storage is held by ``buf`` alone: no view of it (a saved variable, a
    retained graph) is alive. The count includes the storage object made to ask."""
    count = getattr(torch._C, "_storage_Use_Count", None)
    return count is not None and count(buf.untyped_storage()._cdata) == 2


def _block_rows(width: int, itemsize: int) -> int:
    """Rows per block: about :data:`BLOCK_BYTES` of pre-activations."""
    return max(16, BLOCK_BYTES // (width * itemsize))


def _scan_blocks(
    cell: str, x2: Tensor, weight: Tensor, bias: Tensor, h0: Tensor, h: Tensor, out: Tensor
) -> None:
    """``h`` from ``x2 [B*T, I]``, block by block of rows: the block's ``x W^T`` into ``out``
    (rows of the whole pre-activations, or one block's buffer used again), then the kernel
    over those rows while they are still in cache."""
    rows, (width, hidden), steps = x2.size(0), (weight.size(0), h.size(-1)), h.size(1)
    step = _block_rows(width, x2.element_size())
    run, wt = kernel(f"{cell}_fwd", x2.dtype), weight.t()
    for r0 in range(0, rows, step):
        r1 = min(rows, r0 + step)
        block = out[r0:r1] if out.size(0) == rows else out[: r1 - r0]
        torch.mm(x2[r0:r1], wt, out=block)
        run(block.data_ptr(), bias.data_ptr(), h0.data_ptr(), h.data_ptr(), steps, hidden, r0, r1)


def _checked(x: Tensor, weight: Tensor, bias: Tensor, h0: Tensor, cell: str):
    """Contiguous ``x [B*T, I]``, weight, bias, h0 after the shape and dtype checks, and
    ``(B, T, H)``."""
    if x.dim() != 3 or cell not in ("mingru", "minlstm"):
        raise ValueError(f"min-RNN layer: x must be [B, T, I] (got {tuple(x.shape)})")
    (batch, steps, size), width = x.shape, 2 if cell == "mingru" else 3
    hidden = weight.size(0) // width
    check_shapes(
        f"min-RNN layer({cell})",
        {"weight": weight.shape, "bias": bias.shape, "h0": h0.shape},
        {"weight": (width * hidden, size), "bias": (width * hidden,), "h0": (batch, hidden)},
        x,
        weight,
        bias,
        h0,
    )
    parts = (t.contiguous() for t in (x.reshape(batch * steps, size), weight, bias, h0))
    return *parts, (batch, steps, hidden)


class ProjectedMinRNN(torch.autograd.Function):
    """One min-RNN layer-direction from its input: ``x [B, T, I]``, ``weight [K*H, I]``,
    ``bias [K*H]``, ``h0 [B, H]`` -> all states ``h [B, T, H]``. The product and the scan run
    block by block (:func:`_scan_blocks`) into the ``workspace`` buffer, which the backward
    reads; the backward runs by blocks of rows too, from the last: the kernel writes a block's
    ``dL/dpre`` into a small buffer, then ``dx = dpre W`` and ``dW += dpre^T x`` read it while
    it is still in cache."""

    @staticmethod
    def forward(ctx, x, weight, bias, h0, cell: str, workspace: Workspace) -> Tensor:
        x2, weight, bias, h0, (batch, steps, hidden) = _checked(x, weight, bias, h0, cell)
        h = x2.new_empty(batch, steps, hidden)
        pre = workspace.take((batch * steps, weight.size(0)), x2.dtype)
        _scan_blocks(cell, x2, weight, bias, h0, h, pre)
        ctx.cell = cell
        ctx.save_for_backward(x2, weight, bias, h0, h, pre)
        return h

    @staticmethod
    @once_differentiable
    def backward(ctx, grad: Tensor):
        x2, weight, bias, h0, h, pre = ctx.saved_tensors
        (batch, steps, hidden), grad = h.shape, grad.contiguous()
        (rows, width), need_x, need_w = pre.shape, *ctx.needs_input_grad[:2]
        grad_x = x2.new_empty(rows, x2.size(1)) if need_x else None
        grad_w = torch.zeros_like(weight) if need_w else None
        grad_bias = torch.zeros(bias.shape, dtype=torch.float64)
        grad_h0, work = torch.empty_like(h0), h0.new_empty(hidden + width)  # carry; dbias
        step = _block_rows(width, pre.element_size())
        grad_pre = pre.new_empty(min(step, rows), width)
        run = kernel(f"{ctx.cell}_bwd", pre.dtype)
        fixed = [t.data_ptr() for t in (pre, bias, h0, h, grad)]
        for r1 in range(rows, 0, -step):  # the carried gradient runs back from the last row
            r0 = max(0, r1 - step)
            block = grad_pre[: r1 - r0]
            run(
                *fixed,
                block.data_ptr(),
                grad_bias.data_ptr(),
                grad_h0.data_ptr(),
                work.data_ptr(),
                steps,
                hidden,
                r0,
                r1,
            )
            if grad_x is not None:
                torch.mm(block, weight, out=grad_x[r0:r1])
            if grad_w is not None:
                grad_w.addmm_(block.t(), x2[r0:r1])
        grad_x = grad_x.view(batch, steps, x2.size(1)) if grad_x is not None else None
        return grad_x, grad_w, grad_bias.to(bias.dtype), grad_h0, None, None


def min_rnn_states(
    x: Tensor, weight: Tensor, bias: Tensor, h0: Tensor, cell: str, workspace: Workspace
) -> Tensor:
    """All states of one min-RNN layer-direction from its input (see :class:`ProjectedMinRNN`);
    without a gradient to compute, the blocks share one small buffer and nothing is saved."""
    if torch.is_grad_enabled() and any(t.requires_grad for t in (x, weight, bias, h0)):
        return ProjectedMinRNN.apply(x, weight, bias, h0, cell, workspace)
    x2, weight, bias, h0, (batch, steps, hidden) = _checked(x, weight, bias, h0, cell)
    h = x2.new_empty(batch, steps, hidden)
    rows = _block_rows(weight.size(0), x2.element_size())
    _scan_blocks(cell, x2, weight, bias, h0, h, x2.new_empty(min(rows, x2.size(0)), weight.size(0)))
    return h


def _ptr(t: Tensor | None) -> int | None:
    return None if t is None else t.data_ptr()


class StackLayer(NamedTuple):
    """One layer of a one-direction stack for :func:`infer_stack`: its product's ``weight``
    and ``bias``, the state before its first step ``h0 [B, H]``, whether it adds its input
    (``residual``), the LayerNorm after it (``norm``: weight, bias, eps; None: none) and where
    its last step's states go (``last [B, H]``)."""

    weight: Tensor
    bias: Tensor
    h0: Tensor
    residual: bool
    norm: tuple[Tensor, Tensor, float] | None
    last: Tensor


def infer_stack(cell: str, x2: Tensor, steps: int, layers: list[StackLayer]) -> Tensor:
    """A one-direction stack without gradients, ``x2 [B*T, I]`` -> the last layer's output
    ``[B*T, H]``, block by block of rows through every layer: a block's product, then the
    kernel, which also adds the residual and applies the next LayerNorm, then the next layer's
    product on that block while it is still in cache (each layer carries its own state from one
    block to the next). Only the input and the output pass over memory. All contiguous, one
    float dtype (the caller checks)."""
    rows, width, hidden = x2.size(0), layers[0].weight.size(0), layers[0].last.size(-1)
    output = x2.new_empty(rows, hidden)
    step = _block_rows(width, x2.element_size())
    size = min(step, rows)
    pre, stream, normed = (x2.new_empty(size, n) for n in (width, hidden, hidden))
    carries = [x2.new_empty(hidden) for _ in layers]
    run, top = kernel(f"{cell}_infer", x2.dtype), len(layers) - 1
    for r0 in range(0, rows, step):
        r1 = min(rows, r0 + step)
        inp = x2[r0:r1]
        for k, (layer, carry) in enumerate(zip(layers, carries)):
            torch.mm(inp, layer.weight.t(), out=pre[: r1 - r0])
            # the stream goes to ``stream`` and the next input to ``normed`` (the output at the
            # top); without a norm they are one, written where the next input goes
            y = output[r0:r1] if k == top else normed if layer.norm is not None else stream
            res = (inp if k == 0 else stream) if layer.residual else None
            gamma, beta, eps = layer.norm if layer.norm is not None else (None, None, 0.0)
            run(
                pre.data_ptr(),
                layer.bias.data_ptr(),
                layer.h0.data_ptr(),
                carry.data_ptr(),
                _ptr(res),
                stream.data_ptr() if layer.norm is not None else None,
                _ptr(gamma),
                _ptr(beta),
                eps,
                y.data_ptr(),
                layer.last.data_ptr(),
                steps,
                hidden,
                r0,
                r1,
            )
            inp = y[: r1 - r0]
    return output
