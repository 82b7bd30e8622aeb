"""The scan's time loop in C: compiled once per machine with the system's C compiler, loaded with
ctypes, one call per layer-direction instead of one PyTorch op per step.

Two families of kernels, each in float32 and float64, over contiguous batch-major tensors (one
sequence at a time, each step a contiguous row of ``N`` values, so the state stays in L1):

- ``affine``: ``h_t = a_t h_{t-1} + b_t`` from ``a, b, h [B, T, N]``, ``h0 [B, N]`` (forward or
  reverse in time), and its backward: ``g_t = dL/dh_t + a_{t+1} g_{t+1}``, ``dL/da_t = g_t
  h_{t-1}``, ``dL/db_t = g_t``, ``dL/dh0 = a_1 g_1``. :mod:`seqmodels.layers.linear_scan` wraps
  them as its ``native`` form.
- ``mingru``/``minlstm``: a whole min-RNN layer-direction from its bias-free pre-activations
  ``pre [B, T, 2H | 3H]`` and the bias: gates, candidate and the recurrence in one pass (the
  equations of :mod:`seqmodels.layers.min_rnn`), and a backward that recomputes the gates from
  ``pre`` (a few exponentials are cheaper than storing and re-reading them) while it runs the
  gradient scan back in time, writing ``dL/dpre`` and summing ``dL/dbias``.

The library is built into ``$XDG_CACHE_HOME/seqmodels`` (``~/.cache/seqmodels``), named by a
hash of the source, the compiler, its flags and the CPU, through a temporary file and an atomic
rename: processes that build at once (DDP ranks) each produce the same complete file, and a
loader never sees half of one. Without a compiler (or with ``SEQMODELS_NATIVE_SCAN=0``)
:func:`available` is False, one warning says so, and callers use a PyTorch form instead.
"""

from __future__ import annotations

import ctypes
import hashlib
import logging
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from string import Template

import torch
from torch import Tensor
from torch.nn import functional as F

log = logging.getLogger(__name__)

# libmvec's vector exp (glibc, x86-64): lets the compiler vectorise the gate loops.
_MVEC = """
#pragma omp declare simd notinbranch
extern float expf(float);
#pragma omp declare simd notinbranch
extern double exp(double);
"""
_BODY = Template(r"""
void affine_fwd_$s(const $r* a, const $r* b, const $r* h0, $r* h, long B, long T, long N,
                   int rev) {
    for (long i = 0; i < B; ++i) {
        const $r* prev = h0 + i * N;
        for (long s = 0; s < T; ++s) {
            long o = (i * T + (rev ? T - 1 - s : s)) * N;
            const $r* at = a + o; const $r* bt = b + o; $r* ht = h + o;
            for (long j = 0; j < N; ++j) ht[j] = at[j] * prev[j] + bt[j];
            prev = ht;
        }
    }
}
void affine_bwd_$s(const $r* a, const $r* h0, const $r* h, const $r* gh, $r* ga, $r* gb,
                   $r* gh0, long B, long T, long N, int rev) {
    for (long i = 0; i < B; ++i) {
        for (long s = 0; s < T; ++s) {  /* backward runs against the scan's direction */
            long t = rev ? s : T - 1 - s, o = (i * T + t) * N;
            long later = (i * T + (rev ? t - 1 : t + 1)) * N;
            long before = (i * T + (rev ? t + 1 : t - 1)) * N;
            const $r* hp = (rev ? t == T - 1 : t == 0) ? h0 + i * N : h + before;
            $r* g = gb + o;
            if (s == 0) for (long j = 0; j < N; ++j) g[j] = gh[o + j];
            else for (long j = 0; j < N; ++j) g[j] = gh[o + j] + a[later + j] * gb[later + j];
            for (long j = 0; j < N; ++j) ga[o + j] = g[j] * hp[j];
        }
        long first = (i * T + (rev ? T - 1 : 0)) * N;
        for (long j = 0; j < N; ++j) gh0[i * N + j] = a[first + j] * gb[first + j];
    }
}
/* g(v) = v + 0.5 (v >= 0), sigmoid(v) (v < 0) = max(v + 0.5, sigmoid(v)) */
void mingru_fwd_$s(const $r* pre, const $r* bias, const $r* h0, $r* h, long B, long T,
                   long H) {
    const $r* bk = bias; const $r* bu = bias + H;
    for (long i = 0; i < B; ++i) {
        const $r* prev = h0 + i * H;
        for (long t = 0; t < T; ++t) {
            const $r* k = pre + (i * T + t) * 2 * H; const $r* u = k + H;
            $r* ht = h + (i * T + t) * H;
            #pragma GCC ivdep  /* no step reads another j's values */
            for (long j = 0; j < H; ++j) {
                $r z = 1 / (1 + $exp(-(k[j] + bk[j]))), v = u[j] + bu[j];
                $r c = MAX(v + ($r)0.5, 1 / (1 + $exp(-v)));
                ht[j] = prev[j] + z * (c - prev[j]);
            }
            prev = ht;
        }
    }
}
void mingru_bwd_$s(const $r* pre, const $r* bias, const $r* h0, const $r* h, const $r* gh,
                   $r* gpre, double* gbias, $r* gh0, $r* work, long B, long T, long H) {
    const $r* bk = bias; const $r* bu = bias + H;
    $r* carry = work; $r* acc = work + H;  /* (1 - z_{t+1}) g_{t+1}; this sequence's dbias */
    for (long i = 0; i < B; ++i) {
        for (long j = 0; j < 3 * H; ++j) work[j] = 0;
        for (long t = T - 1; t >= 0; --t) {
            long o = (i * T + t) * H;
            const $r* k = pre + 2 * o; const $r* u = k + H; $r* dk = gpre + 2 * o;
            $r* du = dk + H;
            const $r* hp = t ? h + o - H : h0 + i * H;
            #pragma GCC ivdep  /* no step reads another j's values */
            for (long j = 0; j < H; ++j) {
                $r z = 1 / (1 + $exp(-(k[j] + bk[j]))), v = u[j] + bu[j];
                $r sg = 1 / (1 + $exp(-v)), c = MAX(v + ($r)0.5, sg);
                $r g = gh[o + j] + carry[j], gz = g * z;
                dk[j] = gz * (1 - z) * (c - hp[j]);
                du[j] = gz * (v >= 0 ? ($r)1 : sg * (1 - sg));
                acc[j] += dk[j]; acc[H + j] += du[j];
                carry[j] = g - gz;
            }
        }
        for (long j = 0; j < H; ++j) gh0[i * H + j] = carry[j];
        for (long j = 0; j < 2 * H; ++j) gbias[j] += acc[j];
    }
}
/* z = i / (f + i) = (1 + e_f) / (2 + e_f + e_i), e_k = exp(-k), each term scaled by exp(-m),
   m = max(0, -k_f, -k_i): nothing overflows, and the largest term is exactly 1, so two
   exponentials give all three (r, s: the larger and smaller of -k_f, -k_i). */
static inline $r minlstm_z_$s($r k_f, $r k_i) {
    $r p = -k_f, q = -k_i, r = MAX(p, q), s = p > q ? q : p;
    $r e1 = $exp(r > 0 ? -r : r), e2 = $exp(s - MAX(r, ($r)0));
    $r one = r > 0 ? e1 : ($r)1, big = r > 0 ? ($r)1 : e1;  /* e^-m; e^(r-m) */
    $r ef = p >= q ? big : e2, ei = p >= q ? e2 : big;
    return (one + ef) / (2 * one + ef + ei);
}
void minlstm_fwd_$s(const $r* pre, const $r* bias, const $r* h0, $r* h, long B, long T,
                    long H) {
    const $r* bf = bias; const $r* bi = bias + H; const $r* bu = bias + 2 * H;
    for (long i = 0; i < B; ++i) {
        const $r* prev = h0 + i * H;
        for (long t = 0; t < T; ++t) {
            const $r* kf = pre + (i * T + t) * 3 * H; const $r* ki = kf + H;
            const $r* u = kf + 2 * H; $r* ht = h + (i * T + t) * H;
            #pragma GCC ivdep  /* no step reads another j's values */
            for (long j = 0; j < H; ++j) {
                $r f = kf[j] + bf[j], n = ki[j] + bi[j], v = u[j] + bu[j];
                $r z = minlstm_z_$s(f, n);
                $r c = MAX(v + ($r)0.5, 1 / (1 + $exp(-v)));
                ht[j] = prev[j] + z * (c - prev[j]);
            }
            prev = ht;
        }
    }
}
void minlstm_bwd_$s(const $r* pre, const $r* bias, const $r* h0, const $r* h, const $r* gh,
                    $r* gpre, double* gbias, $r* gh0, $r* work, long B, long T, long H) {
    const $r* bf = bias; const $r* bi = bias + H; const $r* bu = bias + 2 * H;
    $r* carry = work; $r* acc = work + H;
    for (long i = 0; i < B; ++i) {
        for (long j = 0; j < 4 * H; ++j) work[j] = 0;
        for (long t = T - 1; t >= 0; --t) {
            long o = (i * T + t) * H;
            const $r* kf = pre + 3 * o; const $r* ki = kf + H; const $r* u = kf + 2 * H;
            $r* df = gpre + 3 * o; $r* di = df + H; $r* du = df + 2 * H;
            const $r* hp = t ? h + o - H : h0 + i * H;
            #pragma GCC ivdep  /* no step reads another j's values */
            for (long j = 0; j < H; ++j) {
                $r f = kf[j] + bf[j], n = ki[j] + bi[j], v = u[j] + bu[j];
                $r z = minlstm_z_$s(f, n);
                $r sg = 1 / (1 + $exp(-v)), c = MAX(v + ($r)0.5, sg);
                $r g = gh[o + j] + carry[j], gz = g * z;
                /* z = sigmoid(log i - log f); d log sigmoid(k) / dk = sigmoid(-k) */
                $r dd = gz * (1 - z) * (c - hp[j]);
                df[j] = -dd / (1 + $exp(f)); di[j] = dd / (1 + $exp(n));
                du[j] = gz * (v >= 0 ? ($r)1 : sg * (1 - sg));
                acc[j] += df[j]; acc[H + j] += di[j]; acc[2 * H + j] += du[j];
                carry[j] = g - gz;
            }
        }
        for (long j = 0; j < H; ++j) gh0[i * H + j] = carry[j];
        for (long j = 0; j < 3 * H; ++j) gbias[j] += acc[j];
    }
}
""")
# (a comparison, not fmax: fmax's rules for NaN and signed zeros keep gcc from vectorising it)
_SOURCE = "#define MAX(x, y) ((x) > (y) ? (x) : (y))\n" + "".join(
    _BODY.substitute(s=s, r=r, exp=exp)
    for s, r, exp in (("f32", "float", "expf"), ("f64", "double", "exp"))
)
_FLAGS = [
    "-O3",
    "-march=native",
    "-mprefer-vector-width=256",
    "-fno-math-errno",
    "-fno-trapping-math",
]
_FLAGS += ["-shared", "-fPIC"]
_MVEC_FLAGS = ["-fopenmp-simd", "-lmvec"]
SUFFIX = {torch.float32: "f32", torch.float64: "f64"}

_lib: ctypes.CDLL | None = None
_tried = False


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


def _build() -> ctypes.CDLL | None:
    cc = os.environ.get("CC") or shutil.which("gcc") or shutil.which("cc")
    if cc is None:
        log.warning("native scan: no C compiler found (gcc, cc, $CC); using the PyTorch loop")
        return None
    folder = cache_dir()
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError:
        folder = Path(tempfile.gettempdir()) / f"seqmodels-{os.getuid()}"
        folder.mkdir(parents=True, exist_ok=True)
    error = "?"
    for name, extra, source in (("mvec", _MVEC_FLAGS, _MVEC + _SOURCE), ("plain", [], _SOURCE)):
        source = "#include <math.h>\n" + source
        key = hashlib.sha256("\0".join([source, cc, *_FLAGS, *extra, _cpu()]).encode())
        path = folder / f"scan_{name}_{key.hexdigest()[:16]}.so"
        if not path.exists():
            # a name of our own for the source and the output, then one atomic rename
            fd, tmp = tempfile.mkstemp(dir=folder, prefix=f".{path.stem}.", suffix=".c")
            with os.fdopen(fd, "w") as handle:
                handle.write(source)
            out = tmp[:-2] + ".so"
            cmd = [cc, *_FLAGS, tmp, "-o", out, *extra]
            result = subprocess.run(cmd, capture_output=True, text=True, check=False)
            os.unlink(tmp)
            if result.returncode:
                error = (result.stderr.strip().splitlines() or ["?"])[-1]
                continue
            os.replace(out, path)
        try:
            return _declare(ctypes.CDLL(str(path)))
        except OSError as err:  # e.g. no libmvec at run time
            error = str(err)
    log.warning("native scan: building with %s failed (%s); using the PyTorch loop", cc, error)
    return None


def _declare(lib: ctypes.CDLL) -> ctypes.CDLL:
    p, n = ctypes.c_void_p, ctypes.c_long
    for s in SUFFIX.values():
        getattr(lib, f"affine_fwd_{s}").argtypes = [p, p, p, p, n, n, n, ctypes.c_int]
        getattr(lib, f"affine_bwd_{s}").argtypes = [p] * 7 + [n, n, n, ctypes.c_int]
        for cell in ("mingru", "minlstm"):
            getattr(lib, f"{cell}_fwd_{s}").argtypes = [p, p, p, p, n, n, n]
            getattr(lib, f"{cell}_bwd_{s}").argtypes = [p] * 9 + [n, n, n]
    return lib


def available() -> bool:
    """Whether the C kernels are built and loaded (the first call builds them)."""
    global _lib, _tried
    if not _tried:
        _tried = True
        if os.environ.get("SEQMODELS_NATIVE_SCAN", "1") != "0":
            _lib = _build()
    return _lib is not None


def supports(*tensors: Tensor) -> bool:
    """Whether the kernels take these tensors (CPU, float32/float64, built)."""
    return all(t.device.type == "cpu" and t.dtype in SUFFIX for t in tensors) and available()


def kernel(name: str, dtype: torch.dtype):
    """The C function ``name`` for ``dtype`` (:func:`supports` says whether there is one)."""
    if not available():
        raise RuntimeError("the native scan kernels are not built (see the warning above)")
    return getattr(_lib, f"{name}_{SUFFIX[dtype]}")


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
        (batch, steps, _), hidden = pre.shape, h0.size(-1)
        h = pre.new_empty(batch, steps, hidden)
        kernel(f"{cell}_fwd", pre.dtype)(
            pre.data_ptr(), bias.data_ptr(), h0.data_ptr(), h.data_ptr(), batch, steps, hidden
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
            batch,
            steps,
            hidden,
        )
        return grad_pre, grad_bias.to(bias.dtype), grad_h0, None


class AffineScan(torch.autograd.Function):
    """``h_t = a_t h_{t-1} + b_t`` over ``a, b [B, T, N]``, ``h0 [B, N]`` (``reverse``: from
    step T down to 1, ``h0`` the state after step T)."""

    @staticmethod
    def forward(ctx, a: Tensor, b: Tensor, h0: Tensor, reverse: bool) -> Tensor:
        a, b, h0 = a.contiguous(), b.contiguous(), h0.contiguous()
        h = torch.empty_like(b)
        batch, steps, n = b.shape
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
