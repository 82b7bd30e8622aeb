"""Whether the native scan should run here, and whether it did: where a C compiler exists the
library must build (a broken C source fails the tests instead of quietly running the loop), and
a test of the native form checks that the C kernels were called."""

from __future__ import annotations

import os
import shlex
import shutil
from contextlib import contextmanager

import pytest

from seqmodels.layers import native_scan


def has_compiler() -> bool:
    """Whether the compiler the build would take ($CC, else gcc or cc) exists."""
    cc = shlex.split(os.environ.get("CC") or "")
    return bool(shutil.which(cc[0]) if cc else shutil.which("gcc") or shutil.which("cc"))


def require_native() -> None:
    """Skips where no compiler exists (the native form runs the loop there), else checks that
    the library built."""
    if not has_compiler():
        pytest.skip("no C compiler (gcc, cc, $CC): the native form runs the PyTorch loop")
    assert native_scan.available(), "a C compiler exists, but the native scan did not build"


@contextmanager
def native_runs(form: str = "native"):
    """Around code that runs ``form``: for ``native``, :func:`require_native`, then a check
    that the C kernels were called; any other form runs as it is."""
    if form != "native":
        yield
        return
    require_native()
    before = native_scan.calls
    yield
    assert native_scan.calls > before, "the native form ran without calling the C kernels"
