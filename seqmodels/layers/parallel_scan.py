"""The linear recurrence ``h_t = a_t h_{t-1} + b_t`` two ways: a log-space parallel scan and
its sequential twin.

minGRU and minLSTM (Feng et al. 2024, "Were RNNs All We Needed?") reduce to this recurrence
with ``a_t, b_t > 0`` that depend on the input only, so the whole sequence can be computed at
once (Heinsen 2023): with ``A_t = sum_{s<=t} log a_s``,

    h_t = exp(A_t) * (h_0 + sum_{s<=t} b_s exp(-A_s))
    log h_t = A_t + logcumsumexp_{s<=t}(log b_s - A_s)        (h_0 enters as s = 0)

``logcumsumexp`` keeps the sum finite where ``exp(-A_s)`` alone would overflow; ``cumsum`` and
``logcumsumexp`` are each one parallel pass over time. :func:`sequential_scan` is the textbook
loop (one multiply-add per step, no logs), which the tests compare the scan against.
"""

from __future__ import annotations

import torch
from torch import Tensor
from torch.nn import functional as F


def log_g(x: Tensor) -> Tensor:
    """``log g(x)`` for the paper's ``g(x) = x + 0.5 (x >= 0), sigmoid(x) (x < 0)``: a positive,
    continuous stand-in for the identity, so candidate states have a logarithm."""
    return torch.where(x >= 0, torch.log(F.relu(x) + 0.5), -F.softplus(-x))


def g(x: Tensor) -> Tensor:
    """The paper's ``g`` itself (the sequential twin of :func:`log_g`)."""
    return torch.where(x >= 0, x + 0.5, torch.sigmoid(x))


def log_state(h0: Tensor) -> Tensor:
    """``log h0`` for a carried state (positive: a convex mix of positive values), with an exact
    ``-inf`` and a zero gradient where a state is zero (a fresh start)."""
    tiny = torch.finfo(h0.dtype).tiny
    return torch.where(h0 > 0, torch.log(h0.clamp_min(tiny)), float("-inf"))


def parallel_scan(log_a: Tensor, log_b: Tensor, h0: Tensor | None = None) -> Tensor:
    """All ``h_t`` of ``h_t = a_t h_{t-1} + b_t`` from ``log a, log b [B, T, H]`` and the state
    before step 1 ``h0 [B, H]`` (``None``: zeros), as ``[B, T, H]``; time is dimension 1."""
    a_star = torch.cumsum(log_a, dim=1)
    terms = log_b - a_star
    if h0 is not None:  # h_0 is the s = 0 term, where A_0 = 0
        terms = torch.cat([log_state(h0).unsqueeze(1), terms], dim=1)
        return torch.exp(a_star + torch.logcumsumexp(terms, dim=1)[:, 1:])
    return torch.exp(a_star + torch.logcumsumexp(terms, dim=1))


def sequential_scan(a: Tensor, b: Tensor, h0: Tensor | None = None) -> list[Tensor]:
    """The same recurrence one step at a time from ``a, b [B, T, H]``: the list of ``h_t``
    ``[B, H]`` (each its own node in the graph, so a gradient can be taken at any step)."""
    h = a.new_zeros(a.size(0), a.size(2)) if h0 is None else h0
    states = []
    # unbind, not a[:, t]: indexing would give each step's backward a full-size [B, T, H]
    # gradient to add up (quadratic in T); unbind's backward stacks the steps once.
    for a_t, b_t in zip(a.unbind(1), b.unbind(1)):
        h = a_t * h + b_t
        states.append(h)
    return states
