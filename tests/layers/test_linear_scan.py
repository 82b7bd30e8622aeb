"""Every form of the linear scan against a float64 sequential reference written here, gradcheck,
float32 over 10,000 steps, and the native kernels' build (cache, concurrent builds, no compiler).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from native_check import native_runs, require_native

from seqmodels.layers import native_scan
from seqmodels.layers.linear_scan import FORMS, linear_scan

TOL = 1e-10
pytestmark = pytest.mark.usefixtures("one_thread_per_module")
ROOT = Path(__file__).resolve().parents[2]


def reference(a, b, h0, reverse):
    """``h_t = a_t h_{t-1} + b_t`` one step at a time, every step a node of the graph."""
    h = torch.zeros_like(b[:, 0]) if h0 is None else h0
    out = [None] * b.size(1)
    for t in range(b.size(1) - 1, -1, -1) if reverse else range(b.size(1)):
        h = a[:, t] * h + b[:, t]
        out[t] = h
    return torch.stack(out, dim=1)


def inputs(h0: str, steps: int = 23):
    gen = torch.Generator().manual_seed(0)
    a = torch.rand(3, steps, 5, generator=gen, dtype=torch.double).mul(0.9).add(0.1)
    b = torch.rand(3, steps, 5, generator=gen, dtype=torch.double).add(0.1)
    state = torch.rand(3, 5, generator=gen, dtype=torch.double).add(0.1)
    state = {"none": None, "positive": state, "zero": 0 * state, "negative": -state}[h0]
    return a, b, state


@pytest.mark.parametrize("form", FORMS)
@pytest.mark.parametrize("reverse", [False, True])
@pytest.mark.parametrize("h0", ["none", "positive", "zero", "negative"])
def test_every_form_equals_the_sequential_reference(form: str, reverse: bool, h0: str) -> None:
    a, b, state = inputs(h0)
    leaves = [t.requires_grad_() for t in (a, b, state) if t is not None]
    weights = torch.randn(b.shape, dtype=b.dtype, generator=torch.Generator().manual_seed(1))
    with native_runs(form):
        got = linear_scan(a, b, state, form, reverse)
    want = reference(a, b, state, reverse)
    assert want.abs().max() > 0.5  # real states, not zeros agreeing with zeros
    torch.testing.assert_close(got, want, rtol=0, atol=TOL)
    grads_got = torch.autograd.grad((got * weights).sum(), leaves)
    grads_want = torch.autograd.grad((want * weights).sum(), leaves)
    for g, w in zip(grads_got, grads_want):
        assert w.abs().max() > 0.1
        torch.testing.assert_close(g, w, rtol=0, atol=TOL)


@pytest.mark.parametrize("form", FORMS)
@pytest.mark.parametrize("reverse", [False, True])
def test_gradcheck(form: str, reverse: bool) -> None:
    a, b, state = inputs("positive", steps=7)
    leaves = tuple(t.requires_grad_() for t in (a, b, state))
    with native_runs(form):
        linear_scan(*leaves, form, reverse)
    assert torch.autograd.gradcheck(lambda *t: linear_scan(*t, form, reverse), leaves)
    assert torch.autograd.gradcheck(lambda a, b: linear_scan(a, b, None, form, reverse), leaves[:2])


@pytest.mark.parametrize("form", FORMS)
def test_float32_over_ten_thousand_steps(form: str) -> None:
    """docs/new-models.md states ~2e-7 by the linear forms, 3.7e-4 by logs (on more rows)."""
    gen = torch.Generator().manual_seed(0)
    a = torch.rand(2, 10_000, 4, generator=gen).mul(0.5).add(0.45)  # forget 0.45..0.95
    b = torch.rand(2, 10_000, 4, generator=gen)
    want = reference(a.double(), b.double(), None, False)
    with native_runs(form):
        got = linear_scan(a, b, None, form)
    error = ((got.double() - want).abs() / want).max().item()
    assert error < (1e-2 if form == "log" else 1e-5), error


def test_a_scan_of_no_steps_and_of_more_dimensions() -> None:
    assert linear_scan(torch.ones(2, 0, 3), torch.ones(2, 0, 3), form="native").shape == (2, 0, 3)
    a, b, state = inputs("negative")
    a4, b4 = a.view(3, 23, 5, 1).expand(3, 23, 5, 2), b.view(3, 23, 5, 1).expand(3, 23, 5, 2)
    for form in FORMS:
        got = linear_scan(a4, b4, state.unsqueeze(-1).expand(3, 5, 2), form)
        torch.testing.assert_close(got[..., 1], reference(a, b, state, False), rtol=0, atol=TOL)


def test_native_takes_the_states_and_dtypes_the_loop_takes_and_refuses_the_rest() -> None:
    """The C code reads ``B*N`` values of one dtype from each pointer: a state that broadcasts
    is expanded, mixed dtypes run the loop, any other shape is refused before the call."""
    a, b, state = inputs("positive")
    for h0 in (state[:1], state[0]):  # [1, N], [N]: one state for every sequence
        with native_runs():
            got = linear_scan(a, b, h0, "native")
        want = reference(a, b, h0.expand(3, 5), False)
        torch.testing.assert_close(got, want, rtol=0, atol=TOL)
    want = reference(a, b, None, False)
    for mixed in ((a.float(), b), (a, b.float())):
        got = linear_scan(*mixed, form="native")
        torch.testing.assert_close(got.double(), want, rtol=0, atol=1e-6)
    for form in ("loop", "native"):  # a state for 2 sequences, or of 4 values, for 3 of 5
        for h0 in (state[:2], state[:, :4]):
            with pytest.raises((RuntimeError, ValueError)):
                linear_scan(a, b, h0, form)
    if native_scan.available():
        with pytest.raises(ValueError, match="h0"):
            native_scan.AffineScan.apply(a, b, state[:1], False)
        with pytest.raises(ValueError, match="float"):
            native_scan.AffineScan.apply(a.float(), b, state, False)


def test_unknown_form_is_refused() -> None:
    with pytest.raises(ValueError, match="loop, chunked, native, log"):
        linear_scan(torch.ones(1, 2, 1), torch.ones(1, 2, 1), form="fast")


BUILD = """
import logging, sys, torch
logging.basicConfig(level=logging.WARNING, format="%(message)s")
from seqmodels.layers import native_scan
from seqmodels.layers.linear_scan import linear_scan
a, b = torch.rand(2, 9, 3), torch.rand(2, 9, 3)
same = torch.equal(linear_scan(a, b, form="native"), linear_scan(a, b, form="loop"))
print(native_scan.available(), same)
"""


def run_python(code: str, env: dict, wait: bool = True):
    proc = subprocess.Popen(
        [sys.executable, "-c", code],
        env={**os.environ, "PYTHONPATH": str(ROOT), **env},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    return proc.communicate(timeout=120) if wait else proc


def test_the_native_library_builds_where_there_is_a_compiler() -> None:
    """A C source that does not compile must fail here, not quietly run the loop everywhere."""
    require_native()
    assert native_scan.available()


def test_processes_building_at_once_share_one_cached_library(tmp_path: Path) -> None:
    require_native()
    env = {"XDG_CACHE_HOME": str(tmp_path)}
    procs = [run_python(BUILD, env, wait=False) for _ in range(3)]  # DDP ranks starting together
    for proc in procs:
        out, err = proc.communicate(timeout=120)
        assert out.split() == ["True", "True"], err
    built = sorted(p.name for p in (tmp_path / "seqmodels").iterdir())
    assert len(built) == 1 and built[0].endswith(".so")  # no half-written or temporary files
    out, _ = run_python(BUILD, env)  # a later process loads it without building
    assert out.split() == ["True", "True"]


def test_without_a_compiler_the_loop_runs_and_one_line_says_so(tmp_path: Path) -> None:
    env = {"XDG_CACHE_HOME": str(tmp_path), "PATH": str(tmp_path), "CC": ""}
    out, err = run_python(BUILD, env)
    assert out.split() == ["False", "True"]
    assert err.strip().splitlines() == [
        "native scan: no C compiler found (gcc, cc, $CC); using the PyTorch loop"
    ]


EVIL = '#include <stdio.h>\n__attribute__((constructor)) static void x(void) { puts("PLANTED"); }\n'


def test_a_library_anyone_else_may_write_is_never_loaded(tmp_path: Path) -> None:
    """A cache folder (or a library in it) that is group/world-writable may hold what another
    account put there: it is built afresh in a private temporary folder instead."""
    require_native()
    env = {"XDG_CACHE_HOME": str(tmp_path / "cache"), "TMPDIR": str(tmp_path / "tmp")}
    (tmp_path / "tmp").mkdir()
    assert run_python(BUILD, env)[0].split() == ["True", "True"]
    folder = tmp_path / "cache" / "seqmodels"
    assert folder.stat().st_mode & 0o777 == 0o700
    (library,) = folder.glob("*.so")
    (tmp_path / "evil.c").write_text(EVIL)
    cc = [shutil.which("gcc") or shutil.which("cc"), "-shared", "-fPIC"]
    subprocess.run([*cc, str(tmp_path / "evil.c"), "-o", str(library)], check=True)
    library.chmod(0o666)  # a library others may write, in our own folder: built again over it
    out, err = run_python(BUILD, env)
    assert out.split() == ["True", "True"], err
    subprocess.run([*cc, str(tmp_path / "evil.c"), "-o", str(library)], check=True)
    folder.chmod(0o777)  # a folder others may write: not used at all
    out, err = run_python(BUILD, env)
    assert out.split() == ["True", "True"], err
    assert err.strip().splitlines() == [
        f"native scan: cannot use {folder} (not this user's alone, or not writable); "
        "building in a private temporary folder"
    ]
    assert list((tmp_path / "tmp").iterdir()) == []  # the private folder is removed again


def test_a_library_without_the_kernels_is_passed_over(tmp_path: Path) -> None:
    require_native()
    env = {"XDG_CACHE_HOME": str(tmp_path)}
    assert run_python(BUILD, env)[0].split() == ["True", "True"]
    (library,) = (tmp_path / "seqmodels").glob("*.so")
    (tmp_path / "empty.c").write_text("int nothing;\n")
    cc = [shutil.which("gcc") or shutil.which("cc"), "-shared", "-fPIC"]
    subprocess.run([*cc, str(tmp_path / "empty.c"), "-o", str(library)], check=True)
    out, err = run_python(BUILD, env)
    # the plain build takes over from a broken mvec one; a broken plain one means the loop
    assert out.split() == ["True" if "mvec" in library.name else "False", "True"], err


@pytest.mark.parametrize("cc", ["/nonexistent/gcc", "{gcc} -w"])
def test_a_compiler_that_fails_to_start_falls_back_and_one_with_arguments_works(
    tmp_path: Path, cc: str
) -> None:
    require_native()
    gcc = shutil.which("gcc") or shutil.which("cc")
    out, err = run_python(BUILD, {"XDG_CACHE_HOME": str(tmp_path), "CC": cc.format(gcc=gcc)})
    if cc.startswith("/nonexistent"):
        assert out.split() == ["False", "True"], err
        assert err.strip().splitlines() == [
            "native scan: building with /nonexistent/gcc failed ([Errno 2] No such file or "
            "directory: '/nonexistent/gcc'); using the PyTorch loop"
        ]
    else:
        assert out.split() == ["True", "True"], err


def test_switched_off_the_loop_runs_and_one_line_says_so(tmp_path: Path) -> None:
    out, err = run_python(BUILD, {"XDG_CACHE_HOME": str(tmp_path), "SEQMODELS_NATIVE_SCAN": "0"})
    assert out.split() == ["False", "True"]
    assert err.strip().splitlines() == [
        "native scan: off (SEQMODELS_NATIVE_SCAN=0); using the PyTorch loop"
    ]


@pytest.mark.parametrize(
    ("vendor", "flags", "width"),
    [
        ("GenuineIntel", "fpu avx2 avx512f avx512dq", 512),
        ("GenuineIntel", "fpu avx2", 256),
        ("AuthenticAMD", "fpu avx2 avx512f", 256),
        (None, None, 256),  # no /proc/cpuinfo
    ],
)
def test_the_kernels_vector_width_follows_the_cpu(monkeypatch, vendor, flags, width) -> None:
    """512-bit vectors on an Intel CPU with AVX-512 (faster there), gcc's 256 elsewhere."""
    lines = (
        [] if vendor is None else ["processor\t: 0", f"vendor_id\t: {vendor}", f"flags\t: {flags}"]
    )
    monkeypatch.setattr(native_scan, "_cpuinfo", lambda: lines)
    assert native_scan._vector_width() == width
