"""minGRU and minLSTM (Feng et al. 2024, "Were RNNs All We Needed?"), stacked into an encoder.

Their gates read the current input only, never ``h_{t-1}``, so every layer is the linear
recurrence ``h_t = a_t h_{t-1} + b_t`` of :mod:`seqmodels.layers.linear_scan`:

    minGRU:   z_t = σ(W_z x_t + b_z)          h~_t = g(W_h x_t + b_h)
              h_t = (1 - z_t) h_{t-1} + z_t h~_t
    minLSTM:  f_t = σ(W_f x_t + b_f)          i_t = σ(W_i x_t + b_i)      h~_t = g(W_h x_t + b_h)
              f'_t, i'_t = f_t, i_t / (f_t + i_t)
              h_t = f'_t h_{t-1} + i'_t h~_t

``g`` (``x + 0.5`` above zero, ``σ(x)`` below) keeps every state positive, so the recurrence can
also run in log space. ``scan`` picks how whole sequences are computed (the forms of
:mod:`seqmodels.layers.linear_scan`, the same states): ``native`` is one C call per
layer-direction that computes the gates, the candidate and the recurrence together from the
bias-free pre-activations (:mod:`seqmodels.layers.native_scan`); ``loop``/``chunked`` compute
``a_t, b_t`` with PyTorch ops and scan them; ``log`` is the log-space parallel scan; ``auto`` is
``native`` on a CPU where it builds, else ``loop``, and ``log`` on a GPU (see :func:`scan_form`).
The step-by-step replay (the gradient-flow and gate callbacks) takes the sequential twin, which
keeps every step in the graph.

Between layers, as in the paper's multi-layer models, each layer is a pre-norm residual block:
``x + dropout(layer(LayerNorm(x)))`` (the residual where the sizes match), with a final LayerNorm
on the stack's output. The first layer reads the task's input as it comes: a LayerNorm over raw
features would erase what they say (over the adding problem's two features, ``(value, marker)``,
it leaves only which of the two is larger).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.nn import functional as F
from torch.nn.modules import module as torch_module  # where global forward hooks live

from seqmodels.layers import native_min_rnn, native_scan
from seqmodels.layers.gates import Unrolled, reverse_within
from seqmodels.layers.linear_scan import FORMS, linear_scan
from seqmodels.layers.native_min_rnn import StackLayer
from seqmodels.layers.parallel_scan import g, log_g, parallel_scan, sequential_scan
from seqmodels.layers.stack_checks import check_stack

MIN_CELLS = ("mingru", "minlstm")
# Gate names per cell, as the gate statistics log them ("new"/"cell": the candidate h~).
MIN_GATE_NAMES = {"mingru": ("update", "new"), "minlstm": ("forget", "input", "cell")}
SCANS = ("auto", *FORMS)


def scan_form(scan: str, device: torch.device) -> str:
    """The form ``scan`` runs as on ``device``. ``auto``: on a CPU, ``native`` where it builds
    (the fastest measured, docs/new-models.md), else ``loop``; on a GPU, ``log``: a handful of
    parallel passes, where ``loop`` launches kernels per step and ``chunked`` about
    ``2 sqrt(T)`` (chosen by reasoning: no GPU was at hand to measure). ``native`` off a CPU or
    without a compiler runs as ``auto`` does there."""
    if scan not in SCANS:
        raise ValueError(f"model.scan must be one of {', '.join(SCANS)}, not {scan!r}")
    on_cpu = device.type == "cpu"
    if scan == "auto" or (scan == "native" and not on_cpu):
        return ("native" if native_scan.available() else "loop") if on_cpu else "log"
    if scan == "native" and not native_scan.available():
        return "loop"
    return scan


class MinCell(nn.Module):
    """One direction of one layer: a single linear map of ``x_t`` to the gate and candidate
    pre-activations (rows ``z, h~`` for minGRU; ``f, i, h~`` for minLSTM)."""

    def __init__(self, cell: str, input_size: int, hidden_size: int) -> None:
        super().__init__()
        self.cell, self.hidden_size = cell, hidden_size
        self.linear = nn.Linear(input_size, (2 if cell == "mingru" else 3) * hidden_size)
        self._workspace = native_min_rnn.Workspace()  # the native form's buffer, not state

    def train(self, mode: bool = True) -> MinCell:
        """As nn.Module's; ``eval()`` also lets the training buffer go."""
        if not mode:
            self._workspace.buffer = None
        return super().train(mode)

    def log_coefficients(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """``log a_t, log b_t`` ``[B, T, H]``, computed without leaving log space (in float32
        at least: a cumulative sum over thousands of steps in half precision drifts)."""
        pre = self.linear(x)
        if pre.dtype in (torch.float16, torch.bfloat16):  # autocast (precision=16/bf16)
            pre = pre.float()
        pre = pre.chunk(2 if self.cell == "mingru" else 3, dim=-1)
        if self.cell == "mingru":
            k, h = pre
            return -F.softplus(k), -F.softplus(-k) + log_g(h)  # log(1 - z), log z + log g(h~)
        k_f, k_i, h = pre
        # log f' = log f - log(f + i) = -softplus(log i - log f); likewise for i'.
        diff = F.softplus(-k_f) - F.softplus(-k_i)
        return -F.softplus(diff), -F.softplus(-diff) + log_g(h)

    def gates(self, x: Tensor) -> tuple[Tensor, Tensor, dict[str, Tensor]]:
        """``a_t, b_t`` ``[B, T, H]`` straight from the equations, and the named gates."""
        pre = self.linear(x).chunk(2 if self.cell == "mingru" else 3, dim=-1)
        if self.cell == "mingru":
            z, candidate = torch.sigmoid(pre[0]), g(pre[1])
            return 1 - z, z * candidate, {"update": z, "new": candidate}
        # f / (f + i) = sigmoid(log f - log i): finite even where both gates underflow to 0
        diff = F.softplus(-pre[1]) - F.softplus(-pre[0])
        f, i, candidate = torch.sigmoid(diff), torch.sigmoid(-diff), g(pre[2])
        return f, i * candidate, {"forget": f, "input": i, "cell": candidate}

    def states(self, x: Tensor, h0: Tensor | None, form: str) -> Tensor:
        """All states ``[B, T, H]`` over ``x [B, T, input]`` by a :func:`scan_form` form."""
        weight, bias = self.linear.weight, self.linear.bias
        plain = x.dtype == weight.dtype == bias.dtype and x.dtype in native_scan.SUFFIX
        if form == "native" and plain and not torch.is_autocast_enabled(x.device.type):
            h0 = native_scan.state(h0, x, (x.size(0), self.hidden_size))
            return native_min_rnn.min_rnn_states(x, weight, bias, h0, self.cell, self._workspace)
        if form == "native":  # autocast, or a dtype the kernels do not take
            pre = native_scan.project(x, self.linear.weight)  # the kernel adds the bias
            if pre.dtype not in native_scan.SUFFIX:  # autocast (precision=16/bf16)
                pre = pre.float()
            bias = self.linear.bias.to(pre.dtype)
            h0 = native_scan.state(h0, pre, (x.size(0), self.hidden_size))
            h = native_scan.MinRNNLayer.apply(pre, bias, h0, self.cell)
        elif form == "log" and (h0 is None or bool((h0 > 0).all())):  # else: see linear_scan
            h = parallel_scan(*self.log_coefficients(x), h0)
        else:
            a, b, _ = self.gates(x)
            return linear_scan(a, b, h0, "chunked" if form == "chunked" else "loop")
        # a half-precision model (precision=bf16-true, .half()) gets its own dtype back for the
        # next LayerNorm; under autocast (float32 parameters) the float32 states stay
        return h if self.linear.weight.dtype in native_scan.SUFFIX else h.to(x.dtype)


def _hooked(module: nn.Module) -> bool:
    """Whether calling ``module`` would run a forward hook of its own or a global one: the fused
    inference, which runs no module, must leave it to the layer-by-layer path."""
    global_hooks = getattr(torch_module, "_global_forward_hooks", {}) or getattr(
        torch_module, "_global_forward_pre_hooks", {}
    )
    return bool(module._forward_hooks or module._forward_pre_hooks or global_hooks)


def _plain_norm(norm: nn.Module) -> bool:
    """Whether the fused inference may stand in for ``norm``: none, or a plain LayerNorm over
    the last dim with its weight and bias."""
    if type(norm) is nn.Identity:
        return True
    return (
        type(norm) is nn.LayerNorm
        and len(norm.normalized_shape) == 1
        and norm.weight is not None
        and norm.bias is not None
    )


class MinRNNEncoder(nn.Module):
    """A stack of ``cell`` (``mingru``/``minlstm``) layers over ``[B, T, input_size]``; the same
    interface as :class:`seqmodels.layers.encoders.RNNEncoder` (``forward(x, lengths)``,
    ``run(x, state)``, ``output_size``).

    ``scan`` (``auto``, ``native``, ``loop``, ``chunked``, ``log``; see :func:`scan_form`) picks
    how whole sequences run; in float32/float64 all give the same states (the tests hold them
    to each other). Under bf16/fp16 autocast they differ by rounding: ``loop``/``chunked`` run
    the recurrence in half precision, ``native``/``log`` in float32 (and return float32).
    ``parallel`` is the older switch, kept so that checkpoints that carry it load:
    ``False`` means ``scan="loop"`` (sequential steps), ``True``/``None`` leave ``scan`` as is.
    With ``lengths``, padding never reaches a real step: the forward direction reads it only
    after each sequence's end, and the reverse direction starts at each sequence's own end.
    """

    def __init__(
        self,
        cell: str,
        input_size: int,
        hidden_size: int,
        num_layers: int = 1,
        dropout: float = 0.0,
        bidirectional: bool = False,
        layer_norm: bool = True,
        residual: bool = True,
        scan: str = "auto",
        parallel: bool | None = None,
    ) -> None:
        super().__init__()
        check_stack(cell, MIN_CELLS, hidden_size, num_layers, dropout)
        directions = 2 if bidirectional else 1
        self.cell, self.hidden_size, self.num_layers = cell, hidden_size, num_layers
        self.bidirectional, self.residual = bidirectional, residual
        self.output_size = directions * hidden_size
        sizes = [input_size] + [self.output_size] * num_layers
        self.layers = nn.ModuleList(
            nn.ModuleList(MinCell(cell, sizes[k], hidden_size) for _ in range(directions))
            for k in range(num_layers)
        )
        norm = nn.LayerNorm if layer_norm else lambda _: nn.Identity()
        # no norm on the task's input (embeddings or raw features) into the first layer
        self.norms = nn.ModuleList(
            norm(sizes[k]) if k else nn.Identity() for k in range(num_layers)
        )
        self.final_norm = norm(self.output_size)
        self.dropout = nn.Dropout(dropout if num_layers > 1 else 0.0)
        if scan not in SCANS:  # a misspelt form fails here, not mid-training
            raise ValueError(f"model.scan must be one of {', '.join(SCANS)}, not {scan!r}")
        self.scan = "loop" if parallel is False else scan
        self.has_gates = True  # the gate-statistics callback reads them through unroll()

    def run(self, x: Tensor, state: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """``[B, T, input_size]`` and the carried state ``[num_layers, B, hidden]`` (``None``:
        zeros) -> outputs and the state after step T (a causal, one-direction stack only)."""
        if self.bidirectional:
            raise ValueError("run() carries state forward in time; a bidirectional stack cannot")
        out, final = self._stack(x, None, state, record=None)
        return out, torch.stack(final)

    def forward(self, x: Tensor, lengths: Tensor | None = None) -> Tensor:
        """``[B, T, input_size]`` -> ``[B, T, output_size]`` (zeros past each length)."""
        out, _ = self._stack(x, lengths, None, record=None)
        if lengths is not None:
            steps = torch.arange(x.size(1), device=x.device)
            out = out * (steps.unsqueeze(0) < lengths.to(x.device).unsqueeze(1)).unsqueeze(-1)
        return out

    def unroll(self, x: Tensor, lengths: Tensor | None = None, keep_gates: bool = True):
        """The step-by-step replay the gradient-flow and gate callbacks read (see
        :class:`seqmodels.layers.gates.Unrolled`): per-step states of every layer-direction,
        and its gates ``[B, T, H]`` (time in the direction's order). Without dropout, drawing
        no random numbers, whatever the module's mode (a measurement mid-training)."""
        record, training = Unrolled(output=x), self.training
        self.eval()
        try:
            record.output, _ = self._stack(x, lengths, None, record=record, keep_gates=keep_gates)
        finally:
            self.train(training)
        return record

    def _stack(
        self,
        x: Tensor,
        lengths: Tensor | None,
        state: Tensor | None,
        record: Unrolled | None,
        keep_gates: bool = True,
    ) -> tuple[Tensor, list[Tensor]]:
        if record is None and (fused := self._native_inference(x, state)) is not None:
            return fused
        final = []
        for k, (cells, norm) in enumerate(zip(self.layers, self.norms)):
            inputs = norm(x)
            outputs = []
            for direction, cell in enumerate(cells):
                seq = reverse_within(inputs, lengths) if direction else inputs
                h0 = state[k] if state is not None else None
                h = self._direction(cell, seq, h0, record, (k, direction), keep_gates)
                final.append(h[:, -1])
                outputs.append(reverse_within(h, lengths) if direction else h)
            y = outputs[0] if len(outputs) == 1 else torch.cat(outputs, dim=-1)
            if k < self.num_layers - 1:
                y = self.dropout(y)
            x = x + y if self.residual and x.shape == y.shape else y
        return self.final_norm(x), final

    def _native_inference(
        self, x: Tensor, state: Tensor | None
    ) -> tuple[Tensor, list[Tensor]] | None:
        """The whole one-direction stack by :func:`native_min_rnn.infer_stack` where nothing needs
        a gradient (or dropout): block by block of rows through every layer, each kernel also
        adding the residual and applying the next LayerNorm. None where
        it does not apply (the layer-by-layer path then runs)."""
        params = list(self.parameters())
        tensors = [x, *params] + ([state] if state is not None else [])
        norms = [*list(self.norms)[1:], self.final_norm]
        modules = [*self.norms, self.final_norm, self.dropout]
        if (
            self.bidirectional
            or x.size(0) == 0
            or x.size(1) == 0
            or scan_form(self.scan, x.device) != "native"
            or (torch.is_grad_enabled() and any(t.requires_grad for t in tensors))
            or (self.training and self.dropout.p > 0)
            or torch.is_autocast_enabled(x.device.type)
            or {t.dtype for t in tensors} - {x.dtype}
            or x.dtype not in native_scan.SUFFIX
            or not all(_plain_norm(n) for n in norms)
            or any(_hooked(m) for m in modules)
        ):
            return None
        (batch, steps, size), hidden = x.shape, self.hidden_size
        layers = []
        for k, (cells, norm) in enumerate(zip(self.layers, norms)):
            h0 = native_scan.state(state[k] if state is not None else None, x, (batch, hidden))
            affine = None  # the kernel reads the vectors by pointer: contiguous copies if not
            if isinstance(norm, nn.LayerNorm):
                affine = (norm.weight.contiguous(), norm.bias.contiguous(), norm.eps)
            residual = self.residual and (k > 0 or size == hidden)
            linear, last = cells[0].linear, x.new_empty(batch, hidden)
            bias = linear.bias.contiguous()
            layers.append(StackLayer(linear.weight, bias, h0, residual, affine, last))
        x2 = x.reshape(batch * steps, size).contiguous()
        out = native_min_rnn.infer_stack(self.cell, x2, steps, layers)
        return out.view(batch, steps, self.output_size), [layer.last for layer in layers]

    def _direction(
        self,
        cell: MinCell,
        seq: Tensor,
        h0: Tensor | None,
        record: Unrolled | None,
        key: tuple[int, int],
        keep_gates: bool,
    ) -> Tensor:
        form = scan_form(self.scan, seq.device)
        if record is None and (seq.size(1) > 1 or form != "log"):
            return cell.states(seq, h0, form)
        a, b, gates = cell.gates(seq)
        states = sequential_scan(a, b, h0)
        if record is not None:
            record.states[key] = states
            if keep_gates:
                record.gates[key] = gates
        return torch.stack(states, dim=1)
