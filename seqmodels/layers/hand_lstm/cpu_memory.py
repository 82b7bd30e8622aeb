"""Keep freed CPU memory in the process, so the big buffers a layer allocates per call reuse
pages that are already mapped instead of faulting fresh ones in.

HandLSTM's CPU recurrence allocates its per-call buffers (the gates, cells and states of every
step, tens of MB at B64 T100 H256) and frees them after the backward. glibc's malloc serves
blocks that large by ``mmap`` until a freed one raises its dynamic threshold, and gives the top
of the heap back to the system beyond a trim threshold, so whether a process reuses those pages
or page-faults ~60 MB per training step depends on its allocation history: measured with 2
threads, some processes took ~16,000 minor faults per forward+backward, others none, and the
faulting ones ran the HandLSTM/nn.LSTM ratio at ~1.43 instead of ~1.22. Fixing both thresholds
(as the fast processes end up with anyway) makes reuse certain. Memory freed stays with the
process (up to ``TRIM_THRESHOLD`` at the heap top), as in any caching allocator.
"""

from __future__ import annotations

import ctypes
import sys

M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3  # glibc's mallopt parameters (malloc.h)
MMAP_THRESHOLD = 32 << 20  # the largest glibc accepts on 64-bit: blocks below come from the heap
TRIM_THRESHOLD = 1 << 30  # free memory at the heap top kept for reuse

_state: dict[str, bool] = {}


def keep_freed_memory() -> bool:
    """Set glibc's malloc thresholds once per process; False where malloc is not glibc's."""
    if "set" not in _state:
        _state["set"] = _mallopt()
    return _state["set"]


def _mallopt() -> bool:
    if not sys.platform.startswith("linux"):
        return False
    try:
        mallopt = ctypes.CDLL("libc.so.6").mallopt
    except (OSError, AttributeError):  # another C library (musl), no mallopt
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    return mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD) == 1 and (
        mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD) == 1
    )
