"""The LSTM as the textbook writes it: one plain step, and a layer made of plain steps.

This is the definition the fast paths (:mod:`seqmodels.layers.hand_lstm.function`) are tested
against, and the path taken wherever the fast path cannot go:

* a second derivative (``create_graph=True``): the fast Function's backward differentiates
  :func:`lstm_layer_reference` with autograd (:func:`layer_vjp`);
* ``torch.func`` transforms (``grad``, ``vjp``, ``jvp``, ``vmap``), ``torch.compile``,
  ``torch.export`` and ``torch.jit.trace``: every op here is an ordinary differentiable,
  batchable, traceable ATen op, with no in-place writes.

Nothing here is tuned for speed; every line is an equation.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import torch
from torch import Tensor


def reference_step(
    x_t: Tensor, h: Tensor, c: Tensor, w_ih: Tensor, w_hh: Tensor, bias: Tensor | None
) -> tuple[Tensor, Tensor]:
    """One LSTM step, ``(x_t, h_{t-1}, c_{t-1}) -> (h_t, c_t)``, gates in nn.LSTM's order.

    ``w_ih``: ``[4H, I]``, ``w_hh``: ``[4H, H]`` (rows: input, forget, cell, output gate),
    ``bias``: ``b_ih + b_hh`` or None. ``h`` may be projected (``[B, P]``); the caller
    projects the returned ``h_t``.
    """
    pre = x_t @ w_ih.t() + h @ w_hh.t()  # the four gates' pre-activations, side by side
    if bias is not None:
        pre = pre + bias
    a_i, a_f, a_g, a_o = pre.chunk(4, -1)
    i = torch.sigmoid(a_i)  # input gate      i_t = σ(W_ii x_t + W_hi h_{t-1} + b_i)
    f = torch.sigmoid(a_f)  # forget gate     f_t = σ(W_if x_t + W_hf h_{t-1} + b_f)
    g = torch.tanh(a_g)  # cell candidate     g_t = tanh(W_ig x_t + W_hg h_{t-1} + b_g)
    o = torch.sigmoid(a_o)  # output gate     o_t = σ(W_io x_t + W_ho h_{t-1} + b_o)
    c = f * c + i * g  # cell                 c_t = f_t c_{t-1} + i_t g_t
    h = o * torch.tanh(c)  # hidden           h_t = o_t tanh(c_t)
    return h, c


def lstm_layer_reference(
    x: Tensor,
    h0: Tensor,
    c0: Tensor,
    w_ih: Tensor,
    w_hh: Tensor,
    b_ih: Tensor | None,
    b_hh: Tensor | None,
    w_hr: Tensor | None,
    batch_sizes: list[int],
    reverse: bool = False,
) -> tuple[Tensor, Tensor, Tensor]:
    """One layer-direction of :func:`reference_step` over packed rows; ``out [N, P], h_n, c_n``.

    Same arguments and results as :func:`~seqmodels.layers.hand_lstm.function.lstm_layer`:
    the rows of step ``t`` are the next ``batch_sizes[t]`` rows of ``x`` (the sequences still
    running, longest first). Walking forward, the running state sheds the rows of sequences
    that ended (they are their final state); walking backward (``reverse``), it gains the rows
    of sequences that start (from their initial state). Written in the subset of Python that
    TorchScript compiles, for :func:`lstm_layer_traceable`.
    """
    steps = len(batch_sizes)
    starts = [0]  # starts[t]: the first row of step t
    for size in batch_sizes:
        starts.append(starts[-1] + size)
    bias: Tensor | None = None
    if b_ih is not None and b_hh is not None:
        bias = b_ih + b_hh
    first = batch_sizes[steps - 1] if reverse else batch_sizes[0]
    h, c = h0[:first], c0[:first]
    ended_h: list[Tensor] = []  # final states of sequences that stopped, last rows first
    ended_c: list[Tensor] = []
    outs: list[Tensor] = []
    for k in range(steps):
        t = steps - 1 - k if reverse else k
        n, bs = h.size(0), batch_sizes[t]
        if bs < n:  # sequences bs..n-1 ended at the previous step
            ended_h.append(h[bs:])
            ended_c.append(c[bs:])
            h, c = h[:bs], c[:bs]
        elif bs > n:  # sequences n..bs-1 start here (reverse direction)
            h, c = torch.cat([h, h0[n:bs]]), torch.cat([c, c0[n:bs]])
        h, c = reference_step(x[starts[t] : starts[t + 1]], h, c, w_ih, w_hh, bias)
        if w_hr is not None:
            h = h @ w_hr.t()  # projection      h_t = W_hr (o_t tanh(c_t))
        outs.append(h)
    if reverse:
        outs.reverse()  # back to time order
    ended_h.append(h)
    ended_c.append(c)
    ended_h.reverse()
    ended_c.reverse()
    return torch.cat(outs), torch.cat(ended_h), torch.cat(ended_c)


def _traceable(
    x: Tensor,
    h0: Tensor,
    c0: Tensor,
    w_ih: Tensor,
    w_hh: Tensor,
    b_ih: Tensor | None,
    b_hh: Tensor | None,
    w_hr: Tensor | None,
    batch_sizes: Tensor,
    reverse: bool,
) -> tuple[Tensor, Tensor, Tensor]:
    sizes: list[int] = batch_sizes.tolist()
    return lstm_layer_reference(x, h0, c0, w_ih, w_hh, b_ih, b_hh, w_hr, sizes, reverse)


_scripted: list[torch.jit.ScriptFunction] = []


def lstm_layer_traceable(
    x: Tensor,
    h0: Tensor,
    c0: Tensor,
    w_ih: Tensor,
    w_hh: Tensor,
    b_ih: Tensor | None,
    b_hh: Tensor | None,
    w_hr: Tensor | None,
    batch_sizes: Tensor,
    reverse: bool = False,
) -> tuple[Tensor, Tensor, Tensor]:
    """:func:`lstm_layer_reference` compiled by TorchScript, for ``torch.jit.trace``.

    Tracing records the ops a Python loop runs, so a traced Python recurrence would be fixed to
    the traced sequence length and batch. A scripted call is recorded as one node that keeps
    its loop, taking ``batch_sizes`` as a tensor, so the trace (like one of nn.LSTM, whose
    ``aten::lstm`` is one node) runs other lengths and batch sizes too.
    """
    if not _scripted:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)  # torch.jit is deprecated
            _scripted.append(torch.jit.script(_traceable))
    return _scripted[0](x, h0, c0, w_ih, w_hh, b_ih, b_hh, w_hr, batch_sizes, reverse)


def layer_vjp(
    inputs: Sequence[Tensor | None],
    batch_sizes: Sequence[int],
    reverse: bool,
    grad_outputs: Sequence[Tensor],
    needs_input_grad: Sequence[bool],
) -> tuple[Tensor | None, ...]:
    """Gradients of one layer-direction, differentiable again (for double backward).

    ``inputs``: ``x, h0, c0, w_ih, w_hh, b_ih, b_hh, w_hr`` as saved by a fast Function;
    ``grad_outputs``: ``d_out, d_hn, d_cn``. Recomputes the layer with
    :func:`lstm_layer_reference` and returns ``autograd.grad(..., create_graph=True)`` of it,
    one entry per input (None where ``needs_input_grad`` is False). A fast Function calls this
    from its backward when ``torch.is_grad_enabled()``, i.e. under ``create_graph=True``.
    """
    wanted = [k for k, need in enumerate(needs_input_grad) if need and inputs[k] is not None]
    with torch.enable_grad():  # saved inputs keep their graph: the result is differentiable
        outputs = lstm_layer_reference(*inputs, batch_sizes, reverse)
        grads = torch.autograd.grad(
            outputs,
            [inputs[k] for k in wanted],
            grad_outputs,
            create_graph=True,
            allow_unused=True,
        )
    result: list[Tensor | None] = [None] * len(inputs)
    for k, grad in zip(wanted, grads, strict=True):
        result[k] = grad if grad is not None else torch.zeros_like(inputs[k])
    return tuple(result)
