"""One LSTM layer-direction as a ``torch.autograd.Function`` with hand-derived BPTT.

Sequences are stored time-major and packed, as in a ``PackedSequence``: the rows of step ``t``
are ``x[lo:hi]`` and hold the ``batch_sizes[t]`` sequences still running (longest first). A
padded ``[T, B, I]`` batch is the special case ``batch_sizes = [B] * T``.

Forward and backward share one idea, the *running state*: the ``h``/``c`` of the sequences
active at the current step. When fewer sequences are active than before, the ones that
stopped hand their state to the final state; when more are active (the reverse direction
walking back from each sequence's own last step), the new ones start from the initial state.

The plain textbook step these fast paths are tested against, and the whole-layer recompute
used for double backward, ``torch.func``, ``torch.compile``, ``torch.export`` and
``torch.jit.trace``, are in :mod:`seqmodels.layers.hand_lstm.reference`
(``reference_step``, ``lstm_layer_reference``, ``layer_vjp``; re-exported here).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor
from torch.autograd.function import FunctionCtx

from seqmodels.layers.hand_lstm.cpu_memory import keep_freed_memory
from seqmodels.layers.hand_lstm.kernels import _double_cell_rows_, _tanh, linear_by
from seqmodels.layers.hand_lstm.reference import (
    layer_vjp,
    lstm_layer_reference,
    lstm_layer_traceable,
    reference_step,
)
from seqmodels.layers.hand_lstm.steps import (
    batched,
    previous_states,
    resize_state,
    step_rows,
    traced,
)

__all__ = [
    "LSTMLayerFunction",
    "layer_vjp",
    "linear_by",
    "lstm_forward",
    "lstm_inference",
    "lstm_bilayer",
    "lstm_layer",
    "lstm_layer_reference",
    "lstm_layer_traceable",
    "reference_step",
]


def lstm_forward(
    x: Tensor,
    h0: Tensor,
    c0: Tensor,
    w_ih: Tensor,
    w_hh: Tensor,
    bias: Tensor | None,
    w_hr: Tensor | None,
    batch_sizes: list[int],
    reverse: bool,
) -> tuple[Tensor, Tensor, Tensor, tuple[Tensor, ...]]:
    """Run the recurrence; returns ``out, h_n, c_n`` and what the backward needs.

    ``x``: ``[N, I]`` packed rows; ``h0``: ``[B, P]``; ``c0``: ``[B, H]``; ``P = H`` unless
    ``w_hr`` projects the hidden state to ``P`` features.
    """
    n_rows, n_in, hidden = x.size(0), x.size(1), c0.size(1)
    if n_in != w_ih.size(1):  # as nn.LSTM reports it (from its input matmul)
        raise RuntimeError(
            "mat1 and mat2 shapes cannot be multiplied "
            f"({n_rows}x{n_in} and {w_ih.size(1)}x{w_ih.size(0)})"
        )
    # Every gate reads [x_t, h_{t-1}]: one matmul per step with W = [W_ih | W_hh], its sigmoid
    # fused in. One sigmoid serves all four gates: tanh(a) = 2 σ(2a) - 1, so the cell-candidate
    # rows of W and b are doubled (exactly: a power of two) and g is recovered as 2 σ - 1.
    weight = _double_cell_rows_(torch.cat([w_ih, w_hh], 1), hidden)
    bias = _double_cell_rows_(bias.clone(), hidden) if bias is not None else None
    gates_of = linear_by(weight, bias, sigmoid=True)
    xh = x.new_empty(n_rows, n_in + h0.size(1))  # row r: [x_t, h_{t-1}] of its sequence
    xh[:, :n_in] = x
    gates = x.new_empty(n_rows, 4 * hidden)
    cells, tanh_cells = x.new_empty(n_rows, hidden), x.new_empty(n_rows, hidden)
    out = x.new_empty(n_rows, h0.size(1))
    hiddens = out if w_hr is None else x.new_empty(n_rows, hidden)
    h_n, c_n = torch.empty_like(h0), torch.empty_like(c0)

    def rows(t: Tensor | None) -> Sequence[Tensor | None]:  # each step's rows, in visiting order
        views = t.split(batch_sizes) if t is not None else [None] * len(batch_sizes)
        return views[::-1] if reverse else views

    h, c, one = h0[:0], c0[:0], x.new_ones(())
    for xh_t, prev_h_t, z_t, c_t, tanh_c_t, h_t, out_t in zip(
        rows(xh),
        rows(xh[:, n_in:]),
        rows(gates),
        rows(cells),
        rows(tanh_cells),
        rows(hiddens),
        rows(out if w_hr is not None else None),
    ):
        h = prev_h_t.copy_(resize_state(h, h0, h_n, xh_t.size(0)))  # completes [x_t, h_{t-1}]
        c = resize_state(c, c0, c_n, xh_t.size(0))
        z = gates_of(xh_t)  # all four gates, σ([x_t, h_{t-1}] W^T + b), at once:
        i, f, g, o = z_t.copy_(z).chunk(4, 1)
        #   input gate      i_t = σ(W_ii x_t + W_hi h_{t-1} + b_i)
        #   forget gate     f_t = σ(W_if x_t + W_hf h_{t-1} + b_f)
        #   output gate     o_t = σ(W_io x_t + W_ho h_{t-1} + b_o)
        g.add_(g).sub_(one)  # cell candidate g_t = tanh(W_ig x_t + W_hg h_{t-1} + b_g)
        c = torch.mul(f, c, out=c_t).addcmul_(i, g)  # c_t = f_t c_{t-1} + i_t g_t
        h = torch.mul(o, _tanh(c, tanh_c_t, one), out=h_t)  # h_t = o_t tanh(c_t)
        if out_t is not None:
            h = torch.mm(h, w_hr.t(), out=out_t)  # h_t = W_hr (o_t tanh(c_t))
    h_n[: h.size(0)] = h
    c_n[: c.size(0)] = c
    return out, h_n, c_n, (xh, gates, cells, tanh_cells, hiddens)


INPUT_CHUNK = 8  # steps whose input products the inference loop runs as one GEMM


def lstm_inference(
    x: Tensor,
    h0: Tensor,
    c0: Tensor,
    w_ih: Tensor,
    w_hh: Tensor,
    bias: Tensor | None,
    w_hr: Tensor | None,
    batch_sizes: list[int],
    reverse: bool,
) -> tuple[Tensor, Tensor, Tensor]:
    """The recurrence with nothing kept for a backward; returns ``out, h_n, c_n``.

    The same equations as :func:`lstm_forward`, regrouped for a loop that no backward reads:
    ``x_t W_ih^T + b`` for ``INPUT_CHUNK`` steps at a time is one GEMM (into one buffer,
    reused chunk after chunk), each step adds ``h_{t-1} W_hh^T`` to its rows in place
    (``addmm_``, which reads ``h_{t-1}`` where the previous step wrote it: no copy), and ``c``
    is one running buffer.
    """
    n_rows, n_in, hidden = x.size(0), x.size(1), c0.size(1)
    if n_in != w_ih.size(1):  # as nn.LSTM reports it (from its input matmul)
        raise RuntimeError(
            "mat1 and mat2 shapes cannot be multiplied "
            f"({n_rows}x{n_in} and {w_ih.size(1)}x{w_ih.size(0)})"
        )
    # As in lstm_forward, one sigmoid serves all four gates: the cell-candidate rows doubled.
    w_ih_t, w_hh_t = w_ih.t().contiguous(), w_hh.t().contiguous()
    for w_t in (w_ih_t, w_hh_t):
        _double_cell_rows_(w_t.t(), hidden)  # W's rows are W^T's columns: doubled in place
    bias = _double_cell_rows_(bias.clone(), hidden) if bias is not None else None
    w_hr_t = w_hr.t() if w_hr is not None else None
    steps, widest = step_rows(batch_sizes, reverse), max(batch_sizes)
    gates = x.new_empty(min(n_rows, widest * INPUT_CHUNK), 4 * hidden)
    tanh_c = x.new_empty(widest, hidden)
    out = x.new_empty(n_rows, h0.size(1))
    h_n, c_n = torch.empty_like(h0), torch.empty_like(c0)

    h, c, one, first = h0[:0], c0[:0], x.new_ones(()), 0
    for k, (lo, hi) in enumerate(steps):
        if k % INPUT_CHUNK == 0:  # x_t W_ih^T + b of this chunk's steps (adjacent rows)
            chunk = steps[k : k + INPUT_CHUNK]
            first, last = min(s[0] for s in chunk), max(s[1] for s in chunk)
            x_w = gates[: last - first]
            if bias is None:
                torch.mm(x[first:last], w_ih_t, out=x_w)
            else:
                torch.addmm(bias, x[first:last], w_ih_t, out=x_w)
        h = resize_state(h, h0, h_n, hi - lo)
        # c: our own buffer after the first step, updated in place
        c = resize_state(c, c0, c_n, hi - lo)
        z = x_w[lo - first : hi - first].addmm_(h, w_hh_t).sigmoid_()
        i, f, g, o = z.chunk(4, 1)  # i_t, f_t, o_t = σ(W_i* x_t + W_h* h_{t-1} + b_*)
        g.add_(g).sub_(one)  # g_t = tanh(W_ig x_t + W_hg h_{t-1} + b_g) = 2 σ(2 ...) - 1
        c = c.mul_(f).addcmul_(i, g)  # c_t = f_t c_{t-1} + i_t g_t
        tanh_c_t = _tanh(c, tanh_c[: hi - lo], one)
        if w_hr_t is None:
            h = torch.mul(o, tanh_c_t, out=out[lo:hi])  # h_t = o_t tanh(c_t)
        else:  # h_t = W_hr (o_t tanh(c_t))
            h = torch.mm(tanh_c_t.mul_(o), w_hr_t, out=out[lo:hi])
    h_n[: h.size(0)] = h
    c_n[: c.size(0)] = c
    return out, h_n, c_n


class LSTMLayerFunction(torch.autograd.Function):
    """``(x, h0, c0, weights..., batch_sizes, reverse) -> (out, h_n, c_n)`` with manual BPTT."""

    @staticmethod
    def forward(
        ctx: FunctionCtx,
        x: Tensor,
        h0: Tensor,
        c0: Tensor,
        w_ih: Tensor,
        w_hh: Tensor,
        b_ih: Tensor | None,
        b_hh: Tensor | None,
        w_hr: Tensor | None,
        batch_sizes: Sequence[int],
        reverse: bool,
    ) -> tuple[Tensor, Tensor, Tensor]:
        bias = b_ih + b_hh if b_ih is not None else None
        out, h_n, c_n, saved = lstm_forward(
            x, h0, c0, w_ih, w_hh, bias, w_hr, list(batch_sizes), reverse
        )
        ctx.batch_sizes, ctx.reverse = list(batch_sizes), reverse
        ctx.save_for_backward(x, h0, c0, w_ih, w_hh, b_ih, b_hh, w_hr, *saved)
        return out, h_n, c_n

    @staticmethod
    def backward(ctx, d_out: Tensor, d_hn: Tensor, d_cn: Tensor) -> tuple[Tensor | None, ...]:
        x, h0, c0, w_ih, w_hh, b_ih, b_hh, w_hr, *saved = ctx.saved_tensors
        # create_graph=True (a gradient differentiable again) or batched gradients (vmap over
        # the backward, e.g. autograd.grad(is_grads_batched=True)): autograd of the reference.
        if torch.is_grad_enabled() or batched(d_out, d_hn, d_cn):
            inputs = (x, h0, c0, w_ih, w_hh, b_ih, b_hh, w_hr)
            grads = layer_vjp(
                inputs, ctx.batch_sizes, ctx.reverse, (d_out, d_hn, d_cn), ctx.needs_input_grad[:8]
            )
            return *grads, None, None
        xh, gates, cells, tanh_cells, hiddens = saved
        steps = step_rows(ctx.batch_sizes, ctx.reverse)
        c_prev_all = previous_states(cells, c0, steps, ctx.reverse)
        d_gates = torch.empty_like(gates)
        d_h_all = xh.new_empty(xh.size(0), h0.size(1)) if w_hr is not None else None
        d_h0, d_c0 = torch.empty_like(h0), torch.empty_like(c0)
        recurrent_back = linear_by(w_hh.t().contiguous())  # d -> d W_hh

        # Walk the steps backwards; dh, dc carry dL/dh_t, dL/dc_t from step t+1 (BPTT).
        dh, dc = d_hn[:0], d_cn[:0]
        for lo, hi in reversed(steps):
            dh = resize_state(dh, d_hn, d_h0, hi - lo) + d_out[lo:hi]
            dc = resize_state(dc, d_cn, d_c0, hi - lo)
            i, f, g, o = gates[lo:hi].chunk(4, 1)
            tanh_c, c_prev = tanh_cells[lo:hi], c_prev_all[lo:hi]
            if w_hr is not None:
                d_h_all[lo:hi] = dh
                dh = dh @ w_hr  # dL/d(o_t tanh c_t)
            # h_t = o tanh(c_t):  dc_t += dh o (1 - tanh² c_t),  do = dh tanh(c_t)
            dc = dc + torch.ops.aten.tanh_backward(dh * o, tanh_c)
            # c_t = f c_{t-1} + i g:  di = dc g,  df = dc c_{t-1},  dg = dc i
            # through the activations: σ' = σ (1 - σ), tanh' = 1 - tanh²
            d_i, d_f, d_g, d_o = d_gates[lo:hi].chunk(4, 1)
            torch.ops.aten.sigmoid_backward(dc * g, i, grad_input=d_i)
            torch.ops.aten.sigmoid_backward(dc * c_prev, f, grad_input=d_f)
            torch.ops.aten.tanh_backward(dc * i, g, grad_input=d_g)
            torch.ops.aten.sigmoid_backward(dh * tanh_c, o, grad_input=d_o)
            dc = dc * f  # dL/dc_{t-1}
            dh = recurrent_back(d_gates[lo:hi])  # dL/dh_{t-1} (recurrent part)
        d_h0[: dh.size(0)] = dh
        d_c0[: dc.size(0)] = dc

        # Weight gradients: one matmul over all steps each, as cuDNN does; the rows of xh are
        # [x_t, h_{t-1}], so d[W_ih | W_hh] is a single product.
        need = ctx.needs_input_grad
        d_x = d_gates @ w_ih if need[0] else None
        d_w = d_gates.t() @ xh if need[3] or need[4] else None  # [dW_ih | dW_hh]
        d_w_ih = d_w[:, : w_ih.size(1)] if need[3] else None
        d_w_hh = d_w[:, w_ih.size(1) :] if need[4] else None
        d_b = d_gates.sum(0) if need[5] or need[6] else None
        d_w_hr = d_h_all.t() @ hiddens if w_hr is not None and need[7] else None
        d_b_hh = d_b.clone() if need[5] and need[6] else d_b
        return d_x, d_h0, d_c0, d_w_ih, d_w_hh, d_b, d_b_hh, d_w_hr, None, None


def lstm_layer(
    x: Tensor,
    h0: Tensor,
    c0: Tensor,
    w_ih: Tensor,
    w_hh: Tensor,
    b_ih: Tensor | None,
    b_hh: Tensor | None,
    w_hr: Tensor | None,
    batch_sizes: Sequence[int],
    reverse: bool = False,
) -> tuple[Tensor, Tensor, Tensor]:
    """One layer-direction over packed rows ``x``; returns ``out [N, P], h_n, c_n``.

    Eager, on plain tensors: the fast recurrence, through the autograd Function when a
    gradient is needed, else :func:`lstm_inference` (keeping nothing for a backward). Under a
    transform or compiler (see :func:`traced`): the plain differentiable
    :func:`lstm_layer_reference`; under ``torch.jit.trace`` the same, scripted
    (:func:`lstm_layer_traceable`).
    ``batch_sizes`` may be a tensor only under ``torch.jit.trace``.
    """
    args = (x, h0, c0, w_ih, w_hh, b_ih, b_hh, w_hr)
    if torch.jit.is_tracing():  # a scripted loop: the trace keeps working for other shapes
        if not isinstance(batch_sizes, Tensor):  # e.g. [input.size(0)], a traced 0-dim tensor
            batch_sizes = torch.stack([torch.as_tensor(s) for s in batch_sizes])
        return lstm_layer_traceable(*args, batch_sizes, reverse)
    if traced(args):
        return lstm_layer_reference(*args, list(batch_sizes), reverse)
    with torch.autocast(x.device.type, enabled=False):
        if x.is_cuda and w_hr is None:  # fused steps (cuda.py's docstring says how)
            from seqmodels.layers.hand_lstm.cuda import cuda_lstm_layer

            return cuda_lstm_layer(x, h0, c0, w_ih, w_hh, b_ih, b_hh, batch_sizes, reverse)
        keep_freed_memory()  # per-call buffers reuse mapped pages (cpu_memory says why)
        if torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in args):
            return LSTMLayerFunction.apply(*args, batch_sizes, reverse)
        bias = b_ih + b_hh if b_ih is not None else None
        sizes = list(batch_sizes)
        return lstm_inference(x, h0, c0, w_ih, w_hh, bias, w_hr, sizes, reverse)


def lstm_bilayer(
    x: Tensor,
    h0: Tensor,
    c0: Tensor,
    weights_forward: Sequence[Tensor | None],
    weights_reverse: Sequence[Tensor | None],
    batch_sizes: Sequence[int],
) -> tuple[Tensor, Tensor, Tensor]:
    """Both directions of one layer: ``out [N, 2P]`` (forward half first), ``h_n, c_n [2, B, *]``.

    ``weights_*``: ``w_ih, w_hh, b_ih, b_hh, w_hr`` of each direction. On CUDA, without a
    projection, over equal-length sequences, eagerly: one loop for both directions
    (:func:`~seqmodels.layers.hand_lstm.cuda.cuda_bilstm_layer`); otherwise
    :func:`lstm_layer` once per direction.
    """
    args = (x, h0, c0, *weights_forward, *weights_reverse)
    together = (
        x.is_cuda
        and weights_forward[4] is None
        and not torch.jit.is_tracing()
        and not traced(args)
        and len(set(batch_sizes)) == 1
    )
    if together:
        from seqmodels.layers.hand_lstm.cuda import cuda_bilstm_layer

        with torch.autocast(x.device.type, enabled=False):
            return cuda_bilstm_layer(
                x, h0, c0, weights_forward[:4], weights_reverse[:4], len(batch_sizes)
            )
    results = [
        lstm_layer(x, h0[k], c0[k], *weights, batch_sizes, k == 1)
        for k, weights in enumerate((weights_forward, weights_reverse))
    ]
    out, h_n, c_n = zip(*results)
    return torch.cat(out, 1), torch.stack(h_n), torch.stack(c_n)
