"""Callbacks Lightning does not ship."""

from seqmodels.callbacks.grad_norm import GradNormLogger

__all__ = ["GradNormLogger"]
