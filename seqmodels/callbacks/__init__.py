"""Callbacks Lightning does not ship: gradient norms and flow, gate statistics, text samples,
checkpoint extras, CPU budgets, interrupts. May import core, data, layers, nets and tasks."""

from seqmodels.callbacks.checkpoint_extras import RNGState, SaveRunConfig
from seqmodels.callbacks.cpu_budget import CPUTimeBudget
from seqmodels.callbacks.gate_stats import GateStatsLogger
from seqmodels.callbacks.grad_flow import GradFlowLogger
from seqmodels.callbacks.grad_norm import GradNormLogger
from seqmodels.callbacks.step_checkpoint import StepCheckpoint
from seqmodels.callbacks.text_samples import TextSamples

__all__ = [
    "CPUTimeBudget",
    "GateStatsLogger",
    "GradFlowLogger",
    "GradNormLogger",
    "RNGState",
    "SaveRunConfig",
    "StepCheckpoint",
    "TextSamples",
]
