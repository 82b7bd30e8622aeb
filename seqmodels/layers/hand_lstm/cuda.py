"""HandLSTM's layer on CUDA: the same recurrence, two kernels a step each way.

On a GPU the textbook step (a GEMM, then ~8 small element-wise kernels) is bound by kernel
launches, not arithmetic. This path keeps the equations and changes only how they are grouped:

* ``x_t W_ih^T + b`` for every step is one GEMM before the loop (it does not depend on ``h``);
* each step is one GEMM, ``z_t = (x_t W_ih^T + b) + h_{t-1} W_hh^T``, and one fused kernel,
  :func:`cell_forward`, for everything element-wise (σ, tanh, ``c_t``, ``h_t``), which
  ``torch.compile`` turns into a single Triton kernel;
* the backward mirrors it: one fused kernel, :func:`cell_backward`, for the gate gradients and
  ``dL/dc_{t-1}``, one GEMM for ``dL/dh_{t-1} = dz_t W_hh``, and the weight gradients as one
  GEMM each over all steps (as cuDNN does).

Launch overhead remains (two launches a step from Python); capture the module with
``torch.cuda.make_graphed_callables`` to replay a whole forward and backward as one CUDA graph
(``scripts/bench_rnn.py --device cuda`` times both). The layer without ``proj_size`` takes
this path; with a projection, HandLSTM uses the portable one in ``function.py``.

A bidirectional layer over equal-length sequences runs both directions *in the same loop*
(:func:`cuda_bilstm_layer`): step ``s`` advances the forward direction at time ``s`` and the
reverse one at time ``T-1-s``, so their two recurrent products are one batched GEMM
(``torch.baddbmm`` over a ``[2, H, 4H]`` stack of ``W_hh^T``) and their element-wise work one
fused kernel over ``2B`` rows. Half the launches, twice the work per launch; cuDNN overlaps
the directions the same way. Packed input (directions of different widths at a step) keeps
one loop per direction.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence

import torch
from torch import Tensor
from torch.autograd.function import FunctionCtx

from seqmodels.layers.hand_lstm.reference import layer_vjp
from seqmodels.layers.hand_lstm.steps import batched, resize_state, step_rows


def _wide(t: Tensor) -> Tensor:
    """``t`` in at least float32 (the arithmetic of fp16/bf16 steps; float64 stays)."""
    return t.to(torch.promote_types(t.dtype, torch.float32))


def cell_forward(z: Tensor, c_prev: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """The element-wise half of a step, from pre-activations ``z = [z_i, z_f, z_g, z_o]``.

    Returns ``h_t, c_t, gates = [i, f, g, o]`` (kept for the backward) and ``tanh(c_t)``.
    """
    z_i, z_f, z_g, z_o = _wide(z).chunk(4, 1)  # fp32 arithmetic under fp16/bf16 too
    i, f, g, o = z_i.sigmoid(), z_f.sigmoid(), z_g.tanh(), z_o.sigmoid()
    c = f * _wide(c_prev) + i * g  # c_t = f_t c_{t-1} + i_t g_t
    tanh_c = c.tanh()
    h = o * tanh_c  # h_t = o_t tanh(c_t)
    dtype = z.dtype
    gates = torch.cat([i, f, g, o], 1)
    return h.to(dtype), c.to(dtype), gates.to(dtype), tanh_c.to(dtype)


def cell_backward(
    dh: Tensor, dc: Tensor, gates: Tensor, tanh_c: Tensor, c_prev: Tensor
) -> tuple[Tensor, Tensor]:
    """``dL/dh_t`` (all of it) and ``dL/dc_t`` (from step t+1) -> ``dL/dz_t``, ``dL/dc_{t-1}``."""
    dtype = dh.dtype
    dh, dc, tanh_c, c_prev = _wide(dh), _wide(dc), _wide(tanh_c), _wide(c_prev)
    i, f, g, o = _wide(gates).chunk(4, 1)
    dc = dc + dh * o * (1 - tanh_c * tanh_c)  # through h_t = o_t tanh(c_t)
    d_i = dc * g * i * (1 - i)  # σ' = σ (1 - σ)
    d_f = dc * c_prev * f * (1 - f)
    d_g = dc * i * (1 - g * g)  # tanh' = 1 - tanh²
    d_o = dh * tanh_c * o * (1 - o)
    return torch.cat([d_i, d_f, d_g, d_o], 1).to(dtype), (dc * f).to(dtype)


_compiled: dict[str, Callable] = {}
# Whether HandLSTM's CUDA layer runs the fused, compiled kernels (False: the same functions
# eagerly, ~8 kernels a step; scripts/bench_rnn.py times both).
COMPILE = True
# Compiled variants each fused function may have. Dynamo compiles one per dtype and per
# layout it meets (its guards tell a row slice at offset 0 from one further on), so one
# process training in float32, bf16 and fp16, forward and reverse, needs more than
# torch._dynamo's default of 8, and with fullgraph=True the 9th would raise.
RECOMPILE_LIMIT = 64


def fused(name: str) -> Callable:
    """:func:`cell_forward` / :func:`cell_backward`, compiled once (one kernel each on CUDA).

    Its callers run under :func:`compile_budget`: a variant per dtype and layout.
    """
    if name not in _compiled:
        fn = {"forward": cell_forward, "backward": cell_backward}[name]
        _compiled[name] = torch.compile(fn, dynamic=True, fullgraph=True)
    return _compiled[name]


def limit_key() -> str:
    """Dynamo's recompile-limit setting: ``recompile_limit`` since torch 2.7, before that
    ``cache_size_limit`` (kept as an alias)."""
    config = torch._dynamo.config
    return "recompile_limit" if hasattr(config, "recompile_limit") else "cache_size_limit"


def compile_budget(fn: Callable) -> Callable:
    """``fn`` run with ``torch._dynamo``'s recompile limit at :data:`RECOMPILE_LIMIT`."""

    @functools.wraps(fn)
    def run(*args: object) -> object:
        with torch._dynamo.config.patch(**{limit_key(): RECOMPILE_LIMIT}):
            return fn(*args)

    return run


@compile_budget
def _run_forward(
    x: Tensor,
    h0: Tensor,
    c0: Tensor,
    w_ih: Tensor,
    w_hh: Tensor,
    bias: Tensor | None,
    batch_sizes: Sequence[int],
    reverse: bool,
    compiled: bool,
) -> tuple[Tensor, Tensor, Tensor, tuple[Tensor, ...]]:
    """The loop; returns ``out, h_n, c_n`` and, per row, ``gates, tanh_c, c_{t-1}, h_{t-1}``."""
    step = fused("forward") if compiled else cell_forward
    x_part = torch.addmm(bias, x, w_ih.t()) if bias is not None else x @ w_ih.t()
    w_hh_t = w_hh.t()
    h_n, c_n = torch.empty_like(h0), torch.empty_like(c0)
    outs, gates_all, tanh_all, c_prev_all, h_prev_all = [], [], [], [], []
    h, c = h0[:0], c0[:0]
    for lo, hi in step_rows(batch_sizes, reverse):
        h = resize_state(h, h0, h_n, hi - lo)
        c = resize_state(c, c0, c_n, hi - lo)
        z = torch.addmm(x_part[lo:hi], h, w_hh_t)  # z_t = x_t W_ih^T + b + h_{t-1} W_hh^T
        h_prev, c_prev = h, c
        h, c, gates, tanh_c = step(z, c)
        for store, value in zip(
            (outs, gates_all, tanh_all, c_prev_all, h_prev_all), (h, gates, tanh_c, c_prev, h_prev)
        ):
            store.append(value)
    h_n[: h.size(0)] = h
    c_n[: c.size(0)] = c
    if reverse:  # back to row (time) order
        for store in (outs, gates_all, tanh_all, c_prev_all, h_prev_all):
            store.reverse()
    saved = tuple(torch.cat(s) for s in (gates_all, tanh_all, c_prev_all, h_prev_all))
    return torch.cat(outs), h_n, c_n, saved


class CudaLSTMLayer(torch.autograd.Function):
    """``(x, h0, c0, w_ih, w_hh, b_ih, b_hh, batch_sizes, reverse, compiled) -> out, h_n, c_n``."""

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
        batch_sizes: Sequence[int],
        reverse: bool,
        compiled: bool,
    ) -> tuple[Tensor, Tensor, Tensor]:
        bias = b_ih + b_hh if b_ih is not None else None
        out, h_n, c_n, saved = _run_forward(
            x, h0, c0, w_ih, w_hh, bias, batch_sizes, reverse, compiled
        )
        ctx.steps, ctx.compiled = step_rows(batch_sizes, reverse), compiled
        ctx.batch_sizes, ctx.reverse = list(batch_sizes), reverse
        ctx.save_for_backward(x, h0, c0, w_ih, w_hh, b_ih, b_hh, *saved)
        return out, h_n, c_n

    @staticmethod
    @compile_budget
    def backward(ctx, d_out: Tensor, d_hn: Tensor, d_cn: Tensor) -> tuple[Tensor | None, ...]:
        x, h0, c0, w_ih, w_hh, b_ih, b_hh, gates, tanh_c, c_prev, h_prev = ctx.saved_tensors
        # create_graph=True or batched gradients: autograd of the reference layer, as on CPU.
        if torch.is_grad_enabled() or batched(d_out, d_hn, d_cn):
            inputs = (x, h0, c0, w_ih, w_hh, b_ih, b_hh, None)
            needs = (*ctx.needs_input_grad[:7], False)
            grads = layer_vjp(inputs, ctx.batch_sizes, ctx.reverse, (d_out, d_hn, d_cn), needs)
            return *grads[:7], None, None, None
        step = fused("backward") if ctx.compiled else cell_backward
        d_gates = torch.empty_like(gates)
        d_h0, d_c0 = torch.empty_like(h0), torch.empty_like(c0)
        dh, dc = d_hn[:0], d_cn[:0]
        for lo, hi in reversed(ctx.steps):  # BPTT: dh, dc carry dL/dh_t, dL/dc_t backwards
            dh = resize_state(dh, d_hn, d_h0, hi - lo) + d_out[lo:hi]
            dc = resize_state(dc, d_cn, d_c0, hi - lo)
            d_z, dc = step(dh, dc, gates[lo:hi], tanh_c[lo:hi], c_prev[lo:hi])
            d_gates[lo:hi] = d_z
            dh = d_z @ w_hh  # dL/dh_{t-1}
        d_h0[: dh.size(0)] = dh
        d_c0[: dc.size(0)] = dc
        need = ctx.needs_input_grad
        d_x = d_gates @ w_ih if need[0] else None
        d_w_ih = d_gates.t() @ x if need[3] else None
        d_w_hh = d_gates.t() @ h_prev if need[4] else None
        d_b = d_gates.sum(0) if need[5] or need[6] else None
        d_b_hh = d_b.clone() if need[5] and need[6] else d_b
        return d_x, d_h0, d_c0, d_w_ih, d_w_hh, d_b, d_b_hh, None, None, None


def cuda_lstm_layer(
    x: Tensor,
    h0: Tensor,
    c0: Tensor,
    w_ih: Tensor,
    w_hh: Tensor,
    b_ih: Tensor | None,
    b_hh: Tensor | None,
    batch_sizes: Sequence[int],
    reverse: bool = False,
    compiled: bool | None = None,
) -> tuple[Tensor, Tensor, Tensor]:
    """One layer-direction over packed rows ``x`` (no projection); returns ``out, h_n, c_n``.

    ``compiled=False`` runs the same functions eagerly (any device; what the CPU tests use);
    ``None`` follows :data:`COMPILE`.
    """
    compiled = COMPILE if compiled is None else compiled
    args = (x, h0, c0, w_ih, w_hh, b_ih, b_hh)
    if torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in args):
        return CudaLSTMLayer.apply(*args, list(batch_sizes), reverse, compiled)
    bias = b_ih + b_hh if b_ih is not None else None
    out, h_n, c_n, _ = _run_forward(
        x, h0, c0, w_ih, w_hh, bias, list(batch_sizes), reverse, compiled
    )
    return out, h_n, c_n


def _time_to_steps(t: Tensor) -> Tensor:
    """``[T, B, 2, ...]`` in time order -> ``[T, 2, B, ...]`` in step order (reverse flipped)."""
    return torch.stack([t[:, :, 0], t[:, :, 1].flip(0)], 1)


def _steps_to_time(t: Tensor) -> Tensor:
    """``[T, 2, B, ...]`` in step order -> ``[T, B, 2, ...]`` in time order (its inverse)."""
    return torch.stack([t[:, 0], t[:, 1].flip(0)], 2)


def _cat_weights(
    forward: Sequence[Tensor | None], backward: Sequence[Tensor | None]
) -> tuple[Tensor, Tensor, Tensor | None]:
    """``W_ih`` of both directions ``[8H, I]``, ``W_hh^T`` stacked ``[2, H, 4H]``, the biases."""
    (w_ih_f, w_hh_f, b_ih_f, b_hh_f), (w_ih_r, w_hh_r, b_ih_r, b_hh_r) = forward, backward
    w_ih = torch.cat([w_ih_f, w_ih_r])
    w_hh_t = torch.stack([w_hh_f.t(), w_hh_r.t()])
    bias = torch.cat([b_ih_f + b_hh_f, b_ih_r + b_hh_r]) if b_ih_f is not None else None
    return w_ih, w_hh_t, bias


@compile_budget
def _run_bidirectional(
    x: Tensor,
    h0: Tensor,
    c0: Tensor,
    w_ih: Tensor,
    w_hh_t: Tensor,
    bias: Tensor | None,
    seq_len: int,
    compiled: bool,
) -> tuple[Tensor, Tensor, Tensor, tuple[Tensor, ...]]:
    """Both directions' loop; ``out [T*B, 2H], h_n, c_n [2, B, H]`` and what backward needs."""
    step = fused("forward") if compiled else cell_forward
    batch, hidden = h0.size(1), h0.size(2)
    x_part = torch.addmm(bias, x, w_ih.t()) if bias is not None else x @ w_ih.t()
    x_part = _time_to_steps(x_part.view(seq_len, batch, 2, 4 * hidden))  # [T, 2, B, 4H]
    h, c = h0, c0.reshape(2 * batch, hidden)
    outs, gates_all, tanh_all, c_prev_all, h_prev_all = [], [], [], [], []
    for s in range(seq_len):
        # both z_t = x_t W_ih^T + b + h_{t-1} W_hh^T at once: [2, B, H] @ [2, H, 4H]
        z = torch.baddbmm(x_part[s], h, w_hh_t).view(2 * batch, 4 * hidden)
        h_prev, c_prev = h, c
        h, c, gates, tanh_c = step(z, c)
        h = h.view(2, batch, hidden)
        for store, value in zip(
            (outs, gates_all, tanh_all, c_prev_all, h_prev_all), (h, gates, tanh_c, c_prev, h_prev)
        ):
            store.append(value)
    out = _steps_to_time(torch.stack(outs)).reshape(seq_len * batch, 2 * hidden)
    saved = tuple(torch.stack(s) for s in (gates_all, tanh_all, c_prev_all, h_prev_all))
    return out, h, c.view(2, batch, hidden), saved


class CudaBiLSTMLayer(torch.autograd.Function):
    """``(x, h0, c0, *weights_forward, *weights_reverse, seq_len, compiled) -> out, h_n, c_n``.

    ``h0``, ``c0``, ``h_n``, ``c_n`` are ``[2, B, H]`` (forward direction first); ``x`` and
    ``out`` are time-major rows ``[T*B, ...]`` of equal-length sequences.
    """

    @staticmethod
    def forward(
        ctx: FunctionCtx, x: Tensor, h0: Tensor, c0: Tensor, *args: object
    ) -> tuple[Tensor, Tensor, Tensor]:
        weights, (seq_len, compiled) = args[:8], args[8:]
        w_ih, w_hh_t, bias = _cat_weights(weights[:4], weights[4:])
        out, h_n, c_n, saved = _run_bidirectional(x, h0, c0, w_ih, w_hh_t, bias, seq_len, compiled)
        ctx.seq_len, ctx.compiled = seq_len, compiled
        ctx.save_for_backward(x, h0, c0, *weights, *saved)
        return out, h_n, c_n

    @staticmethod
    @compile_budget
    def backward(ctx, d_out: Tensor, d_hn: Tensor, d_cn: Tensor) -> tuple[Tensor | None, ...]:
        x, h0, c0, *weights = ctx.saved_tensors
        weights, (gates, tanh_c, c_prev, h_prev) = weights[:8], weights[8:]
        if torch.is_grad_enabled() or batched(d_out, d_hn, d_cn):  # as CudaLSTMLayer
            return *_bidirectional_vjp(ctx, x, h0, c0, weights, d_out, d_hn, d_cn), None, None
        step = fused("backward") if ctx.compiled else cell_backward
        seq_len, (_, batch, hidden) = ctx.seq_len, h0.shape
        w_ih, w_hh_t, _ = _cat_weights(weights[:4], weights[4:])
        w_hh = w_hh_t.transpose(1, 2)  # [2, 4H, H]
        d_steps = _time_to_steps(d_out.view(seq_len, batch, 2, hidden))
        d_gates = torch.empty_like(gates)  # [T, 2B, 4H], step order
        dh, dc = d_hn, d_cn.reshape(2 * batch, hidden)
        for s in reversed(range(seq_len)):  # BPTT, both directions at once
            dh = dh + d_steps[s]
            d_z, dc = step(dh.view(2 * batch, hidden), dc, gates[s], tanh_c[s], c_prev[s])
            d_gates[s] = d_z
            dh = torch.bmm(d_z.view(2, batch, 4 * hidden), w_hh)  # dL/dh_{t-1}
        d_rows = _steps_to_time(d_gates.view(seq_len, 2, batch, 4 * hidden))
        d_rows = d_rows.reshape(seq_len * batch, 8 * hidden)  # dL/d(x W_ih^T + b), time order
        need = ctx.needs_input_grad
        d_x = d_rows @ w_ih if need[0] else None
        d_w_ih = (d_rows.t() @ x).chunk(2) if need[3] or need[7] else (None, None)
        per_direction = d_gates.view(seq_len, 2, batch, 4 * hidden).transpose(0, 1)
        d_w_hh = torch.bmm(
            per_direction.reshape(2, -1, 4 * hidden).transpose(1, 2),
            h_prev.transpose(0, 1).reshape(2, -1, hidden),
        )
        d_b = d_rows.sum(0).chunk(2) if weights[2] is not None else (None, None)
        grads: list[Tensor | None] = [d_x, dh, dc.view(2, batch, hidden)]
        for k in range(2):
            grads += [d_w_ih[k], d_w_hh[k], d_b[k], d_b[k].clone() if d_b[k] is not None else None]
        return *(g if n else None for g, n in zip(grads, need)), None, None


def _bidirectional_vjp(
    ctx,
    x: Tensor,
    h0: Tensor,
    c0: Tensor,
    weights: Sequence[Tensor | None],
    d_out: Tensor,
    d_hn: Tensor,
    d_cn: Tensor,
) -> tuple[Tensor | None, ...]:
    """Differentiable gradients (double backward, vmap): each direction's :func:`layer_vjp`."""
    need = ctx.needs_input_grad
    batch, hidden = h0.size(1), h0.size(2)
    sizes = [batch] * ctx.seq_len
    x_grads, per_direction = [], []
    with torch.enable_grad():  # h0[k] must stay a differentiable view of h0, even under vmap
        h0s, c0s = h0.unbind(0), c0.unbind(0)
    for k, reverse in ((0, False), (1, True)):
        inputs = (x, h0s[k], c0s[k], *weights[4 * k : 4 * k + 4], None)
        needs = (need[0], need[1], need[2], *need[3 + 4 * k : 7 + 4 * k], False)
        grads = (d_out[:, k * hidden : (k + 1) * hidden], d_hn[k], d_cn[k])
        d_x, d_h0, d_c0, *d_w = layer_vjp(inputs, sizes, reverse, grads, needs)[:7]
        x_grads.append(d_x)
        per_direction.append((d_h0, d_c0, d_w))
    x_grad = x_grads[0] + x_grads[1] if need[0] else None
    stacked = [
        torch.stack([per_direction[0][k], per_direction[1][k]]) if need[1 + k] else None
        for k in range(2)
    ]
    return x_grad, *stacked, *per_direction[0][2], *per_direction[1][2]


def cuda_bilstm_layer(
    x: Tensor,
    h0: Tensor,
    c0: Tensor,
    weights_forward: Sequence[Tensor | None],
    weights_reverse: Sequence[Tensor | None],
    seq_len: int,
    compiled: bool | None = None,
) -> tuple[Tensor, Tensor, Tensor]:
    """Both directions of a layer over equal-length time-major rows ``x [T*B, I]``.

    ``weights_*``: ``w_ih, w_hh, b_ih, b_hh`` of each direction; ``h0, c0``: ``[2, B, H]``.
    Returns ``out [T*B, 2H]`` (forward half first, as nn.LSTM) and ``h_n, c_n [2, B, H]``.
    """
    compiled = COMPILE if compiled is None else compiled
    args = (x, h0, c0, *weights_forward, *weights_reverse)
    if torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in args):
        return CudaBiLSTMLayer.apply(*args, seq_len, compiled)
    w_ih, w_hh_t, bias = _cat_weights(weights_forward, weights_reverse)
    out, h_n, c_n, _ = _run_bidirectional(x, h0, c0, w_ih, w_hh_t, bias, seq_len, compiled)
    return out, h_n, c_n
