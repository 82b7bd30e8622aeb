"""One LSTM layer-direction as a ``torch.autograd.Function`` with hand-derived BPTT.

Sequences are stored time-major and packed, as in a ``PackedSequence``: the rows of step ``t``
are ``x[lo:hi]`` and hold the ``batch_sizes[t]`` sequences still running (longest first). A
padded ``[T, B, I]`` batch is the special case ``batch_sizes = [B] * T``.

Forward and backward share one idea, the *running state*: the ``h``/``c`` of the sequences
active at the current step. When fewer sequences are active than before, the ones that
stopped hand their state to the final state; when more are active (the reverse direction
walking back from each sequence's own last step), the new ones start from the initial state.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor
from torch.autograd.function import FunctionCtx, once_differentiable

Steps = list[tuple[int, int]]


def _steps(batch_sizes: Sequence[int], reverse: bool) -> Steps:
    """Row ranges ``(lo, hi)`` of every time step, in the order the layer visits them."""
    steps, lo = [], 0
    for bs in batch_sizes:
        steps.append((lo, lo + bs))
        lo += bs
    return steps[::-1] if reverse else steps


def _resize(state: Tensor, start: Tensor, end: Tensor | None, bs: int) -> Tensor:
    """The running ``state`` narrowed or widened to the ``bs`` sequences of this step.

    Sequences that stopped write their last state into ``end``; new ones read ``start``.
    """
    n = state.size(0)
    if bs < n:
        if end is not None:
            end[bs:n] = state[bs:]
        return state[:bs]
    if bs > n:
        return torch.cat([state, start[n:bs]])
    return state


def _previous(states: Tensor, init: Tensor, steps: Steps, reverse: bool) -> Tensor:
    """For every row, the state its sequence had one step earlier (``init`` at its first)."""
    prev, state = [init] * len(steps), init[:0]
    for k, (lo, hi) in enumerate(steps):
        state = _resize(state, init, None, hi - lo)
        prev[k], state = state, states[lo:hi]
    if reverse:  # back to row (time) order
        prev.reverse()
    return torch.cat(prev)


def _tanh(x: Tensor, out: Tensor, one: Tensor) -> Tensor:
    """``tanh(x)`` into ``out``; on CPU as ``2 σ(2x) - 1``, as ATen's CPU tanh is ~5x slower.

    ``one`` is a 0-dim tensor: a Python-number operand costs a conversion op per call.
    """
    if not x.is_cpu:
        return torch.tanh(x, out=out)
    torch.add(x, x, out=out).sigmoid_()
    return out.add_(out).sub_(one)


def lstm_forward(
    x: Tensor,
    h0: Tensor,
    c0: Tensor,
    w_ih: Tensor,
    w_hh: Tensor,
    bias: Tensor | None,
    w_hr: Tensor | None,
    steps: Steps,
    for_backward: bool,
) -> tuple[Tensor, Tensor, Tensor, tuple[Tensor, ...]]:
    """Run the recurrence; returns ``out, h_n, c_n`` and what the backward needs.

    ``x``: ``[N, I]`` packed rows; ``h0``: ``[B, P]``; ``c0``: ``[B, H]``; ``P = H`` unless
    ``w_hr`` projects the hidden state to ``P`` features.
    """
    n_rows, hidden = x.size(0), c0.size(1)
    # z_t = x_t W_ih^T + b for every step in one matmul; h_{t-1} W_hh^T is added per step.
    z = x.new_empty(n_rows, w_ih.size(0))
    if bias is not None:
        torch.addmm(bias, x, w_ih.t(), out=z)
    else:
        torch.mm(x, w_ih.t(), out=z)
    cells = x.new_empty(n_rows, hidden)
    tanh_cells = x.new_empty(n_rows if for_backward else h0.size(0), hidden)
    out = x.new_empty(n_rows, h0.size(1))
    hiddens = out if w_hr is None else x.new_empty(n_rows, hidden)
    h_n, c_n = torch.empty_like(h0), torch.empty_like(c0)

    # One sigmoid serves all four gates: tanh(a) = 2 σ(2a) - 1, so the cell-candidate rows of
    # z and W_hh are doubled (exactly: a power of two) and g is recovered as 2 σ - 1.
    # W_hh^T is laid out contiguously once: the per-step matmul runs ~25% faster than on a view.
    z[:, 2 * hidden : 3 * hidden].mul_(2)
    w_hh2_t = w_hh.t().contiguous()
    w_hh2_t[:, 2 * hidden : 3 * hidden].mul_(2)
    h, c, one = h0[:0], c0[:0], x.new_ones(())
    for lo, hi in steps:
        h = _resize(h, h0, h_n, hi - lo)
        c = _resize(c, c0, c_n, hi - lo)
        z_t = z[lo:hi].addmm_(h, w_hh2_t).sigmoid_()  # all four gates through σ at once:
        i, f, g, o = z_t.chunk(4, 1)
        #   input gate      i_t = σ(W_ii x_t + W_hi h_{t-1} + b_i)
        #   forget gate     f_t = σ(W_if x_t + W_hf h_{t-1} + b_f)
        #   output gate     o_t = σ(W_io x_t + W_ho h_{t-1} + b_o)
        g.add_(g).sub_(one)  # cell candidate g_t = tanh(W_ig x_t + W_hg h_{t-1} + b_g)
        c = torch.mul(f, c, out=cells[lo:hi]).addcmul_(i, g)  # c_t = f_t c_{t-1} + i_t g_t
        tanh_c = _tanh(c, tanh_cells[lo:hi] if for_backward else tanh_cells[: hi - lo], one)
        h = torch.mul(o, tanh_c, out=hiddens[lo:hi])  # h_t = o_t tanh(c_t)
        if w_hr is not None:
            h = torch.mm(h, w_hr.t(), out=out[lo:hi])  # h_t = W_hr (o_t tanh(c_t))
    h_n[: h.size(0)] = h
    c_n[: c.size(0)] = c
    saved = (z, cells, tanh_cells, hiddens) if for_backward else ()
    return out, h_n, c_n, saved


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
        steps = _steps(batch_sizes, reverse)
        bias = b_ih + b_hh if b_ih is not None else None
        out, h_n, c_n, saved = lstm_forward(x, h0, c0, w_ih, w_hh, bias, w_hr, steps, True)
        ctx.steps, ctx.reverse = steps, reverse
        ctx.save_for_backward(x, h0, c0, w_ih, w_hh, w_hr, out, *saved)
        return out, h_n, c_n

    @staticmethod
    @once_differentiable
    def backward(ctx, d_out: Tensor, d_hn: Tensor, d_cn: Tensor) -> tuple[Tensor | None, ...]:
        x, h0, c0, w_ih, w_hh, w_hr, out, gates, cells, tanh_cells, hiddens = ctx.saved_tensors
        steps = ctx.steps
        c_prev_all = _previous(cells, c0, steps, ctx.reverse)
        d_gates = torch.empty_like(gates)
        d_h_all = torch.empty_like(out) if w_hr is not None else None
        d_h0, d_c0 = torch.empty_like(h0), torch.empty_like(c0)

        # Walk the steps backwards; dh, dc carry dL/dh_t, dL/dc_t from step t+1 (BPTT).
        dh, dc = d_hn[:0], d_cn[:0]
        for lo, hi in reversed(steps):
            dh = _resize(dh, d_hn, d_h0, hi - lo) + d_out[lo:hi]
            dc = _resize(dc, d_cn, d_c0, hi - lo)
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
            dh = d_gates[lo:hi] @ w_hh  # dL/dh_{t-1} (recurrent part)
        d_h0[: dh.size(0)] = dh
        d_c0[: dc.size(0)] = dc

        # Weight gradients: one matmul each over all steps, as cuDNN does.
        need = ctx.needs_input_grad
        d_x = d_gates @ w_ih if need[0] else None
        d_w_ih = d_gates.t() @ x if need[3] else None
        d_w_hh = d_gates.t() @ _previous(out, h0, steps, ctx.reverse) if need[4] else None
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

    Uses the autograd Function only when a gradient is needed; otherwise runs the bare
    recurrence without keeping anything for a backward.
    """
    args = (x, h0, c0, w_ih, w_hh, b_ih, b_hh, w_hr)
    with torch.autocast(x.device.type, enabled=False):
        if torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in args):
            return LSTMLayerFunction.apply(*args, batch_sizes, reverse)
        bias = b_ih + b_hh if b_ih is not None else None
        steps = _steps(batch_sizes, reverse)
        return lstm_forward(x, h0, c0, w_ih, w_hh, bias, w_hr, steps, False)[:3]
