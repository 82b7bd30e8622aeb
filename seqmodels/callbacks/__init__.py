"""Callbacks Lightning does not ship."""

from seqmodels.callbacks.checkpoint_extras import RNGState, SaveRunConfig
from seqmodels.callbacks.grad_norm import GradNormLogger
from seqmodels.callbacks.text_samples import TextSamples

__all__ = ["GradNormLogger", "RNGState", "SaveRunConfig", "TextSamples"]
