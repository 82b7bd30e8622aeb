"""HandLSTM's per-call CPU buffers reuse mapped pages: no page faults per training step."""

from __future__ import annotations

import resource
import sys

import pytest
import torch

from seqmodels.layers import HandLSTM
from seqmodels.layers.hand_lstm.cpu_memory import keep_freed_memory

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc malloc")


def minor_faults() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt


def test_a_training_step_faults_no_fresh_pages_in(one_thread) -> None:
    assert keep_freed_memory()
    lstm = HandLSTM(128, 256, batch_first=True)
    x = torch.randn(64, 100, 128)  # ~60 MB of per-call buffers: mmap-sized blocks
    for _ in range(2):  # warm up: the heap grows once
        lstm(x)[0].sum().backward()
    before = minor_faults()
    for _ in range(3):
        lstm(x)[0].sum().backward()
    per_step = (minor_faults() - before) / 3
    # Faulting the buffers in anew would be ~15,000 faults (4 KB pages) per step.
    assert per_step < 2000, per_step
