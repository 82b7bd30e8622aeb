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
this path; with a projection, HandLSTM uses the portable one in ``hand_lstm_function``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import Tensor
from torch.autograd.function import FunctionCtx

from seqmodels.models.hand_lstm_function import _batched, _resize, _steps, layer_vjp


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


def fused(name: str) -> Callable:
    """:func:`cell_forward` / :func:`cell_backward`, compiled once (one kernel each on CUDA)."""
    if name not in _compiled:
        fn = {"forward": cell_forward, "backward": cell_backward}[name]
        _compiled[name] = torch.compile(fn, dynamic=True, fullgraph=True)
    return _compiled[name]


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
    for lo, hi in _steps(batch_sizes, reverse):
        h = _resize(h, h0, h_n, hi - lo)
        c = _resize(c, c0, c_n, hi - lo)
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
        ctx.steps, ctx.compiled = _steps(batch_sizes, reverse), compiled
        ctx.batch_sizes, ctx.reverse = list(batch_sizes), reverse
        ctx.save_for_backward(x, h0, c0, w_ih, w_hh, b_ih, b_hh, *saved)
        return out, h_n, c_n

    @staticmethod
    def backward(ctx, d_out: Tensor, d_hn: Tensor, d_cn: Tensor) -> tuple[Tensor | None, ...]:
        x, h0, c0, w_ih, w_hh, b_ih, b_hh, gates, tanh_c, c_prev, h_prev = ctx.saved_tensors
        # create_graph=True or batched gradients: autograd of the reference layer, as on CPU.
        if torch.is_grad_enabled() or _batched(d_out, d_hn, d_cn):
            inputs = (x, h0, c0, w_ih, w_hh, b_ih, b_hh, None)
            needs = (*ctx.needs_input_grad[:7], False)
            grads = layer_vjp(inputs, ctx.batch_sizes, ctx.reverse, (d_out, d_hn, d_cn), needs)
            return *grads[:7], None, None, None
        step = fused("backward") if ctx.compiled else cell_backward
        d_gates = torch.empty_like(gates)
        d_h0, d_c0 = torch.empty_like(h0), torch.empty_like(c0)
        dh, dc = d_hn[:0], d_cn[:0]
        for lo, hi in reversed(ctx.steps):  # BPTT: dh, dc carry dL/dh_t, dL/dc_t backwards
            dh = _resize(dh, d_hn, d_h0, hi - lo) + d_out[lo:hi]
            dc = _resize(dc, d_cn, d_c0, hi - lo)
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
