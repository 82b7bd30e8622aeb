"""Callbacks Lightning does not ship."""

from seqmodels.callbacks.checkpoint_extras import RNGState, SaveRunConfig
from seqmodels.callbacks.grad_norm import GradNormLogger

__all__ = ["GradNormLogger", "RNGState", "SaveRunConfig"]
