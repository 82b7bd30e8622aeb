"""The scan's time loop in C: compiled once per machine with the system's C compiler, loaded with
ctypes, one call per layer-direction instead of one PyTorch op per step.

The kernels (:mod:`seqmodels.layers.native_kernels`): ``affine``, ``h_t = a_t h_{t-1} + b_t``
and its backward, wrapped as :class:`AffineScan` (``linear_scan``'s ``native`` form); ``mingru``
and ``minlstm``, a whole layer-direction from its bias-free pre-activations (gates, candidate and
recurrence in one pass; the backward recomputes the gates as the gradient runs back in time),
wrapped as :class:`MinRNNLayer`, whose projection :func:`project` runs by oneDNN (the encoder's
float32/float64 path runs them by blocks of rows instead, :mod:`seqmodels.layers.native_min_rnn`);
``mingru_infer``/``minlstm_infer``, the same without a gradient inside a stack.

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
from torch.nn import functional as F

from seqmodels.layers.native_kernels import MVEC, SOURCE

log = logging.getLogger(__name__)

_X86 = platform.machine().lower() in ("x86_64", "amd64")


def _cpuinfo() -> list[str]:
    try:
        return Path("/proc/cpuinfo").read_text().splitlines()
    except OSError:
        return []


def _vector_width() -> int:
    """gcc's default on x86 is 256-bit vectors (libmvec's AVX2 exp), which ran the kernels
    fastest on an AMD EPYC; on an Intel Xeon with AVX-512, 512-bit ones did (its AVX-512 exp;
    docs/new-models.md has the measurements)."""
    info = {k.strip(): v for k, _, v in (line.partition(":") for line in _cpuinfo()[:40])}
    intel = info.get("vendor_id", "").strip() == "GenuineIntel"
    return 512 if intel and "avx512f" in info.get("flags", "").split() else 256


def _flags() -> list[str]:
    """The compiler's flags for this machine (read when the library is built, not at import)."""
    width = [f"-mprefer-vector-width={_vector_width()}"] if _X86 else []
    return [
        "-O3",
        "-march=native",
        *width,
        "-fno-math-errno",
        "-fno-trapping-math",
        "-shared",
        "-fPIC",
    ]


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
    lines = _cpuinfo()
    if not lines:
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


def _compile(
    cc: list[str], flags: list[str], folder: Path, path: Path, source: str, extra: list[str]
) -> str:
    """Builds ``path`` through a temporary name and an atomic rename; the error, or ``""``."""
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=f".{path.stem}.", suffix=".c")
    out = tmp[:-2] + ".so"
    try:
        with os.fdopen(fd, "w") as handle:
            handle.write(source)
        cmd = [*cc, *flags, tmp, "-o", out, *extra]
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
        flags = _flags()
        for name, extra, source in (("mvec", _MVEC_FLAGS, MVEC + SOURCE), ("plain", [], SOURCE)):
            source = "#include <math.h>\n" + source
            parts = [source, *cc, *flags, *extra, platform.machine(), _cpu()]
            key = hashlib.sha256("\0".join(parts).encode()).hexdigest()[:16]
            path = folder / f"scan_{name}_{key}.so"
            if not (path.exists() and _ours(path, stat.S_IFREG)):
                error = _compile(cc, flags, folder, path, source, extra)
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


def check_shapes(what: str, shapes: dict[str, tuple], want: dict[str, tuple], *tensors: Tensor):
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
        check_shapes(
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
        check_shapes("AffineScan", {"a": a.shape, "b": b.shape, "h0": h0.shape}, want, a, b, h0)
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
