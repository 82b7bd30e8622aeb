"""The scan's time loop in C: compiled once per machine with the system's C compiler, loaded with
ctypes, one call per layer-direction instead of one PyTorch op per step.

The kernels (:mod:`seqmodels.layers.native_kernels`): ``affine``, ``h_t = a_t h_{t-1} + b_t``
and its backward, wrapped as :class:`AffineScan` (``linear_scan``'s ``native`` form); ``mingru``
and ``minlstm``, a whole layer-direction from its bias-free pre-activations (gates, candidate and
recurrence in one pass; the backward recomputes the gates as the gradient runs back in time),
wrapped as :class:`MinRNNLayer`, whose projection :func:`project` runs by oneDNN.

The library is built into ``$XDG_CACHE_HOME/seqmodels`` (``~/.cache/seqmodels``), named by a
hash of the source, the compiler, its flags and the CPU, through a temporary file and an atomic
rename: processes that build at once (DDP ranks) each produce the same complete file, and a
loader never sees half of one. The folder is made ``0o700``; a folder or library that is not
this user's, or that others may write, is never loaded (the build then runs in a private
temporary folder). Without a compiler, when the build fails, or with
``SEQMODELS_NATIVE_SCAN=0``, :func:`available` is False, one warning says so, and callers use
a PyTorch form instead.
"""

from __future__ import annotations

import ctypes
import hashlib
import logging
import os
import platform
import shlex
import shutil
import stat
import subprocess
import sys
import tempfile
from pathlib import Path

import torch
from torch import Tensor
from torch.autograd.function import once_differentiable
from torch.nn import functional as F

from seqmodels.layers.native_kernels import MVEC, SOURCE

log = logging.getLogger(__name__)

_X86 = platform.machine().lower() in ("x86_64", "amd64")
_FLAGS = ["-O3", "-march=native", *(["-mprefer-vector-width=256"] if _X86 else [])]
_FLAGS += ["-fno-math-errno", "-fno-trapping-math", "-shared", "-fPIC"]
_MVEC_FLAGS = ["-fopenmp-simd", "-lmvec"]
SUFFIX = {torch.float32: "f32", torch.float64: "f64"}

_lib: ctypes.CDLL | None = None
_tried = False
calls = 0  # kernel calls so far (the tests check that the native form really ran)


def cache_dir() -> Path:
    """Where the library is kept: ``$XDG_CACHE_HOME/seqmodels`` or ``~/.cache/seqmodels``."""
    root = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(root) / "seqmodels"


def _cpu() -> str:
    """The CPU's name and flags (``-march=native`` code must not run on another CPU model)."""
    try:
        lines = Path("/proc/cpuinfo").read_text().splitlines()
    except OSError:
        return sys.platform
    return "\n".join(
        dict.fromkeys(line for line in lines if line.startswith(("model name", "flags")))
    )


def _ours(path: Path, kind: int) -> bool:
    """Whether ``path`` is a ``kind`` (``stat.S_IFDIR``/``S_IFREG``, not a link) of this user's
    that no one else may write: what another account planted is never loaded."""
    st = os.lstat(path)
    owned = st.st_uid == os.getuid() and not st.st_mode & (stat.S_IWGRP | stat.S_IWOTH)
    return owned and stat.S_IFMT(st.st_mode) == kind


def _folder() -> tuple[Path, bool]:
    """The cache folder (made ``0o700``) where it is this user's alone and writable, else a new
    private temporary one; and whether it is that temporary one."""
    folder = cache_dir()
    try:
        folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        if _ours(folder, stat.S_IFDIR) and os.access(folder, os.W_OK | os.X_OK):
            return folder, False
        why = "not this user's alone, or not writable"
    except OSError as err:
        why = err.strerror or str(err)
    log.warning(
        "native scan: cannot use %s (%s); building in a private temporary folder", folder, why
    )
    return Path(tempfile.mkdtemp(prefix="seqmodels-")), True


def _compile(cc: list[str], folder: Path, path: Path, source: str, extra: list[str]) -> str:
    """Builds ``path`` through a temporary name and an atomic rename; the error, or ``""``."""
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=f".{path.stem}.", suffix=".c")
    out = tmp[:-2] + ".so"
    try:
        with os.fdopen(fd, "w") as handle:
            handle.write(source)
        cmd = [*cc, *_FLAGS, tmp, "-o", out, *extra]
        result = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if result.returncode:
            return (result.stderr.strip().splitlines() or ["?"])[-1]
        os.replace(out, path)
        log.info("native scan: built %s", path)
        return ""
    finally:
        for name in (tmp, out):
            if os.path.exists(name):
                os.unlink(name)


def _build() -> ctypes.CDLL | None:
    cc = shlex.split(os.environ.get("CC") or "") or [shutil.which("gcc") or shutil.which("cc")]
    if cc[0] is None:
        log.warning("native scan: no C compiler found (gcc, cc, $CC); using the PyTorch loop")
        return None
    folder, temporary, error = None, False, "?"
    try:
        folder, temporary = _folder()
        for name, extra, source in (("mvec", _MVEC_FLAGS, MVEC + SOURCE), ("plain", [], SOURCE)):
            source = "#include <math.h>\n" + source
            parts = [source, *cc, *_FLAGS, *extra, platform.machine(), _cpu()]
            key = hashlib.sha256("\0".join(parts).encode()).hexdigest()[:16]
            path = folder / f"scan_{name}_{key}.so"
            if not (path.exists() and _ours(path, stat.S_IFREG)):
                error = _compile(cc, folder, path, source, extra)
                if error:
                    continue
            try:
                return _declare(ctypes.CDLL(str(path)))
            except (OSError, AttributeError) as err:  # no libmvec at run time; a missing symbol
                error = str(err)
    except (OSError, subprocess.SubprocessError) as err:  # no such $CC, a folder we cannot use
        error = str(err)
    finally:
        if temporary:  # the loaded library stays mapped; nothing is left for anyone to replace
            shutil.rmtree(folder, ignore_errors=True)
    log.warning(
        "native scan: building with %s failed (%s); using the PyTorch loop", shlex.join(cc), error
    )
    return None


def _declare(lib: ctypes.CDLL) -> ctypes.CDLL:
    p, n, d = ctypes.c_void_p, ctypes.c_long, ctypes.c_double
    for s in SUFFIX.values():
        getattr(lib, f"affine_fwd_{s}").argtypes = [p, p, p, p, n, n, n, ctypes.c_int]
        getattr(lib, f"affine_bwd_{s}").argtypes = [p] * 7 + [n, n, n, ctypes.c_int]
        for cell in ("mingru", "minlstm"):
            getattr(lib, f"{cell}_fwd_{s}").argtypes = [p, p, p, p, n, n, n, n]
            getattr(lib, f"{cell}_bwd_{s}").argtypes = [p] * 9 + [n, n, n, n]
            getattr(lib, f"{cell}_infer_{s}").argtypes = [p] * 8 + [d, p, p, n, n, n, n]
    return lib


def available() -> bool:
    """Whether the C kernels are built and loaded (the first call builds them)."""
    global _lib, _tried
    if not _tried:
        _tried = True
        if os.environ.get("SEQMODELS_NATIVE_SCAN", "1") == "0":
            log.warning("native scan: off (SEQMODELS_NATIVE_SCAN=0); using the PyTorch loop")
        else:
            _lib = _build()
    return _lib is not None


def supports(*tensors: Tensor) -> bool:
    """Whether the kernels take these tensors (CPU, all float32 or all float64, built)."""
    dtypes = {t.dtype for t in tensors}
    on_cpu = all(t.device.type == "cpu" for t in tensors)
    return on_cpu and len(dtypes) == 1 and dtypes <= SUFFIX.keys() and available()


def kernel(name: str, dtype: torch.dtype):
    """The C function ``name`` for ``dtype`` (:func:`supports` says whether there is one)."""
    global calls
    if not available():
        raise RuntimeError("the native scan kernels are not built (see the warning above)")
    calls += 1
    return getattr(_lib, f"{name}_{SUFFIX[dtype]}")


def state(h0: Tensor | None, like: Tensor, shape: tuple[int, ...]) -> Tensor:
    """The state before the first step as the kernels read it: ``shape`` (batch first),
    contiguous, ``like``'s dtype; ``None`` is zeros, and a state that broadcasts (``[1, N]``,
    ``[N]``) is expanded, as the PyTorch forms' copy does. Any other shape is a ValueError."""
    if h0 is None:
        return like.new_zeros(shape)
    try:
        h0 = h0.broadcast_to(shape)
    except RuntimeError:
        raise ValueError(
            f"a carried state of shape {tuple(h0.shape)} does not fit these sequences: "
            f"it must broadcast to {tuple(shape)}"
        ) from None
    return h0.to(like.dtype).contiguous()


def _check(what: str, shapes: dict[str, tuple], want: dict[str, tuple], *tensors: Tensor):
    """A ValueError unless every shape is as wanted and the tensors share a CPU dtype: the C
    code reads exactly these many values of this type from each pointer."""
    bad = {k: v for k, v in shapes.items() if tuple(v) != want[k]}
    dtypes = {t.dtype for t in tensors}
    if bad or len(dtypes) != 1 or not dtypes <= SUFFIX.keys():
        got = ", ".join(f"{k} {tuple(v)}" for k, v in shapes.items())
        need = ", ".join(f"{k} {v}" for k, v in want.items())
        types = ", ".join(sorted(str(d) for d in dtypes))
        raise ValueError(f"{what}: got {got} ({types}); needs {need}, one float32/64 dtype")


def _onednn_linear(x: Tensor, weight: Tensor) -> Tensor:
    return torch.ops.mkldnn._linear_pointwise(x, weight, None, "none", [], "")


class _OneDNNLinear(torch.autograd.Function):
    """``x W^T`` by oneDNN both ways: ``dx = dy W`` as a linear with ``W^T``, ``dW = dy^T x``."""

    @staticmethod
    def forward(ctx, x: Tensor, weight: Tensor) -> Tensor:
        ctx.save_for_backward(x, weight)
        return _onednn_linear(x, weight)

    @staticmethod
    def backward(ctx, grad: Tensor):
        x, weight = ctx.saved_tensors
        grad_x = grad_w = None
        if ctx.needs_input_grad[0]:
            grad_x = _onednn_linear(grad, weight.t().contiguous())
        if ctx.needs_input_grad[1]:
            grad_w = grad.reshape(-1, grad.size(-1)).t().mm(x.reshape(-1, x.size(-1)))
        return grad_x, grad_w


def project(x: Tensor, weight: Tensor) -> Tensor:
    """``x W^T`` without a bias, by oneDNN's linear where it runs (faster than the BLAS matmul
    behind ``F.linear`` on the CPU measured, docs/new-models.md)."""
    plain = x.dtype == weight.dtype == torch.float32 and not torch.is_autocast_enabled("cpu")
    if plain and x.device.type == "cpu" and torch.backends.mkldnn.is_available():
        if torch.is_grad_enabled() and (x.requires_grad or weight.requires_grad):
            return _OneDNNLinear.apply(x, weight)
        return _onednn_linear(x, weight)
    return F.linear(x, weight)


class MinRNNLayer(torch.autograd.Function):
    """One min-RNN layer-direction, forward in time: ``pre [B, T, K*H]`` (``x W^T``, no bias),
    ``bias [K*H]``, ``h0 [B, H]`` -> all states ``h [B, T, H]`` (K = 2 minGRU, 3 minLSTM)."""

    @staticmethod
    def forward(ctx, pre: Tensor, bias: Tensor, h0: Tensor, cell: str) -> Tensor:
        pre, bias, h0 = pre.contiguous(), bias.contiguous(), h0.contiguous()
        if pre.dim() != 3 or cell not in ("mingru", "minlstm"):
            raise ValueError(f"MinRNNLayer: pre must be [B, T, K*H] (got {tuple(pre.shape)})")
        width = 2 if cell == "mingru" else 3
        (batch, steps, _), hidden = pre.shape, h0.size(-1)
        _check(
            f"MinRNNLayer({cell})",
            {"pre": pre.shape, "bias": bias.shape, "h0": h0.shape},
            {
                "pre": (batch, steps, width * hidden),
                "bias": (width * hidden,),
                "h0": (batch, hidden),
            },
            pre,
            bias,
            h0,
        )
        h = pre.new_empty(batch, steps, hidden)
        kernel(f"{cell}_fwd", pre.dtype)(
            pre.data_ptr(),
            bias.data_ptr(),
            h0.data_ptr(),
            h.data_ptr(),
            steps,
            hidden,
            0,
            batch * steps,
        )
        ctx.cell = cell
        ctx.save_for_backward(pre, bias, h0, h)
        return h

    @staticmethod
    def backward(ctx, grad: Tensor):
        pre, bias, h0, h = ctx.saved_tensors
        grad = grad.contiguous()
        (batch, steps, _), hidden = pre.shape, h0.size(-1)
        grad_pre, grad_h0 = torch.empty_like(pre), torch.empty_like(h0)
        grad_bias = torch.zeros(bias.shape, dtype=torch.float64)
        work = h0.new_empty(hidden + bias.numel())  # the carried gradient, a sum per sequence
        kernel(f"{ctx.cell}_bwd", pre.dtype)(
            *(t.data_ptr() for t in (pre, bias, h0, h, grad, grad_pre, grad_bias, grad_h0)),
            work.data_ptr(),
            steps,
            hidden,
            0,
            batch * steps,
        )
        return grad_pre, grad_bias.to(bias.dtype), grad_h0, None


# About this many bytes of pre-activations per block of rows: the product writes a block and the
# scan reads it while it is still in the core's cache (docs/new-models.md measures the sizes).
BLOCK_BYTES = 1 << 19


class Workspace:
    """The pre-activation buffer of one layer-direction, kept from one training step to the next.

    Training saves the pre-activations for the backward pass (which then overwrites them with
    their gradient), so they need a whole ``[B*T, K*H]`` buffer; at long lengths that is tens of
    MB, which glibc hands out as fresh pages from the kernel on every call, and faulting them in
    took about as long as the product that fills them. :meth:`take` gives the same buffer back
    once nothing else holds it (its backward has run, or its graph was dropped), else a new one.
    Not part of the model's state: copies and pickles start empty."""

    def __init__(self) -> None:
        self.buffer: Tensor | None = None

    def take(self, shape: tuple[int, int], dtype: torch.dtype) -> Tensor:
        buf = self.buffer
        # _use_count: references to the tensor from C++ as well (a saved variable, a view)
        if buf is None or buf.shape != shape or buf.dtype != dtype or buf._use_count() != 1:
            buf = self.buffer = torch.empty(shape, dtype=dtype)
        return buf

    def __deepcopy__(self, memo: dict) -> Workspace:
        return Workspace()

    def __getstate__(self) -> dict:
        return {"buffer": None}


def _block_rows(width: int, itemsize: int) -> int:
    """Rows per block: about :data:`BLOCK_BYTES` of pre-activations."""
    return max(16, BLOCK_BYTES // (width * itemsize))


def _scan_blocks(
    cell: str, x2: Tensor, weight: Tensor, bias: Tensor, h0: Tensor, h: Tensor, out: Tensor
) -> None:
    """``h`` from ``x2 [B*T, I]``, block by block of rows: the block's ``x W^T`` into ``out``
    (rows of the whole pre-activations, or one block's buffer used again), then the kernel
    over those rows while they are still in cache."""
    rows, (width, hidden), steps = x2.size(0), (weight.size(0), h.size(-1)), h.size(1)
    step = _block_rows(width, x2.element_size())
    run, wt = kernel(f"{cell}_fwd", x2.dtype), weight.t()
    for r0 in range(0, rows, step):
        r1 = min(rows, r0 + step)
        block = out[r0:r1] if out.size(0) == rows else out[: r1 - r0]
        torch.mm(x2[r0:r1], wt, out=block)
        run(block.data_ptr(), bias.data_ptr(), h0.data_ptr(), h.data_ptr(), steps, hidden, r0, r1)


def _checked(x: Tensor, weight: Tensor, bias: Tensor, h0: Tensor, cell: str):
    """Contiguous ``x [B*T, I]``, weight, bias, h0 after the shape and dtype checks, and
    ``(B, T, H)``."""
    if x.dim() != 3 or cell not in ("mingru", "minlstm"):
        raise ValueError(f"min-RNN layer: x must be [B, T, I] (got {tuple(x.shape)})")
    (batch, steps, size), width = x.shape, 2 if cell == "mingru" else 3
    hidden = weight.size(0) // width
    _check(
        f"min-RNN layer({cell})",
        {"weight": weight.shape, "bias": bias.shape, "h0": h0.shape},
        {"weight": (width * hidden, size), "bias": (width * hidden,), "h0": (batch, hidden)},
        x,
        weight,
        bias,
        h0,
    )
    parts = (t.contiguous() for t in (x.reshape(batch * steps, size), weight, bias, h0))
    return *parts, (batch, steps, hidden)


class ProjectedMinRNN(torch.autograd.Function):
    """One min-RNN layer-direction from its input: ``x [B, T, I]``, ``weight [K*H, I]``,
    ``bias [K*H]``, ``h0 [B, H]`` -> all states ``h [B, T, H]``. The product and the scan run
    block by block (:func:`_scan_blocks`) into the ``workspace`` buffer, which the backward
    reads; the backward runs by blocks of rows too, from the last: the kernel writes a block's
    ``dL/dpre`` into a small buffer, then ``dx = dpre W`` and ``dW += dpre^T x`` read it while
    it is still in cache."""

    @staticmethod
    def forward(ctx, x, weight, bias, h0, cell: str, workspace: Workspace) -> Tensor:
        x2, weight, bias, h0, (batch, steps, hidden) = _checked(x, weight, bias, h0, cell)
        h = x2.new_empty(batch, steps, hidden)
        pre = workspace.take((batch * steps, weight.size(0)), x2.dtype)
        _scan_blocks(cell, x2, weight, bias, h0, h, pre)
        ctx.cell = cell
        ctx.save_for_backward(x2, weight, bias, h0, h, pre)
        return h

    @staticmethod
    @once_differentiable
    def backward(ctx, grad: Tensor):
        x2, weight, bias, h0, h, pre = ctx.saved_tensors
        (batch, steps, hidden), grad = h.shape, grad.contiguous()
        (rows, width), need_x, need_w = pre.shape, *ctx.needs_input_grad[:2]
        grad_x = x2.new_empty(rows, x2.size(1)) if need_x else None
        grad_w = torch.zeros_like(weight) if need_w else None
        grad_bias = torch.zeros(bias.shape, dtype=torch.float64)
        grad_h0, work = torch.empty_like(h0), h0.new_empty(hidden + width)  # carry; dbias
        step = _block_rows(width, pre.element_size())
        grad_pre = pre.new_empty(min(step, rows), width)
        run = kernel(f"{ctx.cell}_bwd", pre.dtype)
        fixed = [t.data_ptr() for t in (pre, bias, h0, h, grad)]
        for r1 in range(rows, 0, -step):  # the carried gradient runs back from the last row
            r0 = max(0, r1 - step)
            block = grad_pre[: r1 - r0]
            run(
                *fixed,
                block.data_ptr(),
                grad_bias.data_ptr(),
                grad_h0.data_ptr(),
                work.data_ptr(),
                steps,
                hidden,
                r0,
                r1,
            )
            if grad_x is not None:
                torch.mm(block, weight, out=grad_x[r0:r1])
            if grad_w is not None:
                grad_w.addmm_(block.t(), x2[r0:r1])
        grad_x = grad_x.view(batch, steps, -1) if grad_x is not None else None
        return grad_x, grad_w, grad_bias.to(bias.dtype), grad_h0, None, None


def min_rnn_states(
    x: Tensor, weight: Tensor, bias: Tensor, h0: Tensor, cell: str, workspace: Workspace
) -> Tensor:
    """All states of one min-RNN layer-direction from its input (see :class:`ProjectedMinRNN`);
    without a gradient to compute, the blocks share one small buffer and nothing is saved."""
    if torch.is_grad_enabled() and any(t.requires_grad for t in (x, weight, bias, h0)):
        return ProjectedMinRNN.apply(x, weight, bias, h0, cell, workspace)
    x2, weight, bias, h0, (batch, steps, hidden) = _checked(x, weight, bias, h0, cell)
    h = x2.new_empty(batch, steps, hidden)
    rows = _block_rows(weight.size(0), x2.element_size())
    _scan_blocks(cell, x2, weight, bias, h0, h, x2.new_empty(min(rows, x2.size(0)), weight.size(0)))
    return h


def _ptr(t: Tensor | None) -> int | None:
    return None if t is None else t.data_ptr()


def infer_layer(
    cell: str,
    x2: Tensor,
    weight: Tensor,
    bias: Tensor,
    h0: Tensor,
    steps: int,
    res: Tensor | None,
    overwrite: bool,
    norm: tuple[Tensor, Tensor, float] | None,
    last: Tensor,
) -> tuple[Tensor, Tensor]:
    """One layer of a one-direction stack without gradients, ``x2 [B*T, I]`` -> the residual
    stream ``res + h`` (``h`` without ``res``; written over ``res`` if ``overwrite``) and the
    next layer's input ``LayerNorm(stream)`` (``norm``: weight, bias, eps; None: the stream
    itself), product and kernel block by block; the last step's states go to ``last [B, H]``.
    All contiguous, one float dtype (the caller checks)."""
    rows, width = x2.size(0), weight.size(0)
    hidden = last.size(-1)
    stream = res if overwrite and res is not None and res is not x2 else x2.new_empty(rows, hidden)
    y = x2.new_empty(rows, hidden) if norm is not None else stream
    gamma, beta, eps = norm if norm is not None else (None, None, 0.0)
    step = _block_rows(width, x2.element_size())
    block, carry = x2.new_empty(min(step, rows), width), x2.new_empty(hidden)
    run, wt = kernel(f"{cell}_infer", x2.dtype), weight.t()
    fixed = (bias.data_ptr(), h0.data_ptr(), carry.data_ptr(), _ptr(res))
    out = stream.data_ptr() if norm is not None else None
    for r0 in range(0, rows, step):
        r1 = min(rows, r0 + step)
        torch.mm(x2[r0:r1], wt, out=block[: r1 - r0])
        run(
            block.data_ptr(),
            *fixed,
            out,
            _ptr(gamma),
            _ptr(beta),
            eps,
            y.data_ptr(),
            last.data_ptr(),
            steps,
            hidden,
            r0,
            r1,
        )
    return stream, y


class AffineScan(torch.autograd.Function):
    """``h_t = a_t h_{t-1} + b_t`` over ``a, b [B, T, N]``, ``h0 [B, N]`` (``reverse``: from
    step T down to 1, ``h0`` the state after step T)."""

    @staticmethod
    def forward(ctx, a: Tensor, b: Tensor, h0: Tensor, reverse: bool) -> Tensor:
        a, b, h0 = a.contiguous(), b.contiguous(), h0.contiguous()
        if b.dim() != 3:
            raise ValueError(f"AffineScan: b must be [B, T, N] (got {tuple(b.shape)})")
        batch, steps, n = b.shape
        want = {"a": tuple(b.shape), "b": tuple(b.shape), "h0": (batch, n)}
        _check("AffineScan", {"a": a.shape, "b": b.shape, "h0": h0.shape}, want, a, b, h0)
        h = torch.empty_like(b)
        kernel("affine_fwd", b.dtype)(
            a.data_ptr(), b.data_ptr(), h0.data_ptr(), h.data_ptr(), batch, steps, n, reverse
        )
        ctx.reverse = reverse
        ctx.save_for_backward(a, h0, h)
        return h

    @staticmethod
    def backward(ctx, grad: Tensor):
        a, h0, h = ctx.saved_tensors
        grad = grad.contiguous()
        grad_a, grad_b, grad_h0 = torch.empty_like(a), torch.empty_like(h), torch.empty_like(h0)
        batch, steps, n = h.shape
        kernel("affine_bwd", h.dtype)(
            *(t.data_ptr() for t in (a, h0, h, grad, grad_a, grad_b, grad_h0)),
            batch,
            steps,
            n,
            ctx.reverse,
        )
        return grad_a, grad_b, grad_h0, None
