"""Time steps of packed rows, and when the fast LSTM paths step aside: shared by the CPU
Function (:mod:`.function`) and the fused CUDA steps (:mod:`.cuda`).

Rows are stored time-major and packed, as in a ``PackedSequence``: the rows of step ``t`` are
``x[lo:hi]`` and hold the ``batch_sizes[t]`` sequences still running (longest first).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn
from torch.autograd import forward_ad

Steps = list[tuple[int, int]]


def step_rows(batch_sizes: Sequence[int], reverse: bool) -> Steps:
    """Row ranges ``(lo, hi)`` of every time step, in the order the layer visits them."""
    steps, lo = [], 0
    for bs in batch_sizes:
        steps.append((lo, lo + bs))
        lo += bs
    return steps[::-1] if reverse else steps


def resize_state(state: Tensor, start: Tensor, end: Tensor | None, bs: int) -> Tensor:
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


def previous_states(states: Tensor, init: Tensor, steps: Steps, reverse: bool) -> Tensor:
    """For every row, the state its sequence had one step earlier (``init`` at its first)."""
    prev, state = [init] * len(steps), init[:0]
    for k, (lo, hi) in enumerate(steps):
        state = resize_state(state, init, None, hi - lo)
        prev[k], state = state, states[lo:hi]
    if reverse:  # back to row (time) order
        prev.reverse()
    return torch.cat(prev)


PLAIN = (Tensor, nn.Parameter)


def batched(*grads: Tensor) -> bool:
    """Whether a backward runs under vmap: torch.func's, or the legacy one that
    ``autograd.grad(is_grads_batched=True)`` (and so ``gradcheck(check_batched_grad=True)``) uses.
    """
    functorch = torch._C._functorch
    return torch._C._are_functorch_transforms_active() or any(
        functorch.is_legacy_batchedtensor(g) or functorch.is_functorch_wrapped_tensor(g)
        for g in grads
    )


def traced(args: Sequence[Tensor | None]) -> bool:
    """Whether something other than eager autograd on plain tensors is looking at this call.

    The fast path writes into preallocated buffers, calls oneDNN ops that have no batching,
    forward-mode or meta rules, and is an autograd.Function with a hand-written backward:
    ``torch.func`` transforms (vmap, grad, jvp, ...), forward-mode AD (``forward_ad``),
    ``torch.compile`` / ``torch.export`` (dynamo, fake tensors) and tensor subclasses all get
    the plain reference recurrence instead, made of ordinary ATen ops that each of them
    supports (and that ``torch.compile`` fuses). ``torch.jit.trace`` gets it scripted.
    """
    return (
        torch._C._are_functorch_transforms_active()
        or forward_ad._current_level >= 0
        or torch.compiler.is_compiling()
        or any(t is not None and type(t) not in PLAIN for t in args)
    )
