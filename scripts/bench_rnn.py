"""Time HandLSTM against torch.nn.LSTM, side by side in one process.

For each shape it times forward+backward (training) and forward under ``torch.inference_mode``
(interleaving the two models, after a warmup) and prints the medians, a table and the ratios
hand/nn. The last line is the forward+backward ratio of the first shape.

    python scripts/bench_rnn.py                 # CPU, B=64, T=100, I=128, H=256
    python scripts/bench_rnn.py --threads 1     # one thread (steadier on a shared machine)
    python scripts/bench_rnn.py --profile 12    # and the 12 costliest ops of each model
    python scripts/bench_rnn.py --floor         # and HandLSTM's GEMMs alone (its floor)
    python scripts/bench_rnn.py --device cuda   # + fastrnns' H=512 shape, + CUDA graphs

On CUDA more rows per shape: HandLSTM with its per-step kernels run eagerly (no torch.compile),
and each model's whole forward (and backward) replayed as one CUDA graph
(``torch.cuda.make_graphed_callables``), which removes the per-step launch cost that bounds
HandLSTM there; the graphed nn.LSTM row is the fair reference for the graphed HandLSTM.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable, Sequence

import torch
from torch import nn

from seqmodels.layers import HandLSTM
from seqmodels.layers.hand_lstm import cuda as hand_lstm_cuda


def _timer(device: torch.device) -> Callable[[Callable[[], object]], float]:
    def measure(fn: Callable[[], object]) -> float:
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        start = time.perf_counter()
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        return (time.perf_counter() - start) * 1e3

    return measure


def _models(args: argparse.Namespace, num_layers: int, bidirectional: bool) -> tuple:
    """nn.LSTM and HandLSTM with the same weights, an input and an output gradient."""
    device = torch.device(args.device)
    torch.manual_seed(0)
    kwargs = {"num_layers": num_layers, "bidirectional": bidirectional, "device": device}
    reference = nn.LSTM(args.input, args.hidden, **kwargs)
    hand = HandLSTM(args.input, args.hidden, **kwargs)
    hand.load_state_dict(reference.state_dict())
    x = torch.randn(args.steps, args.batch, args.input, device=device, requires_grad=True)
    grad_out = torch.randn(
        args.steps, args.batch, args.hidden * (2 if bidirectional else 1), device=device
    )
    return reference, hand, x, grad_out


def _steps(
    reference: nn.Module, hand: nn.Module, x: torch.Tensor, grad_out: torch.Tensor
) -> dict[str, dict[str, Callable[[], None]]]:
    """``{mode: {"nn": fn, "hand": fn}}``: one training step and one inference call each."""

    def train_step(model: nn.Module) -> Callable[[], None]:
        def step() -> None:
            out, _ = model(x)
            out.backward(grad_out)

        return step

    def infer_step(model: nn.Module) -> Callable[[], None]:
        def step() -> None:
            with torch.inference_mode():
                model(x)

        return step

    return {
        mode: {"nn": make(reference), "hand": make(hand)}
        for mode, make in (("fwd+bwd", train_step), ("inference", infer_step))
    }


def bench_shape(
    args: argparse.Namespace, num_layers: int, bidirectional: bool
) -> dict[str, tuple[float, float]]:
    """Median milliseconds ``{mode: (nn, hand)}`` for one shape."""
    measure = _timer(torch.device(args.device))
    results = {}
    models = _models(args, num_layers, bidirectional)
    for mode, fns in _steps(*models).items():
        if args.device == "cuda":
            fns["hand eager ops"] = uncompiled(fns["hand"])
            graphed = graph_variants(*models, mode)
            fns |= {name: fn for name, fn in graphed.items() if fn is not None}
        times: dict[str, list[float]] = {name: [] for name in fns}
        for _ in range(args.warmup):
            for fn in fns.values():
                fn()
        for _ in range(args.repeats):
            for name, fn in fns.items():  # interleaved, so drift hits both alike
                times[name].append(measure(fn))
        median = {name: statistics.median(t) for name, t in times.items()}
        results[mode] = (median["nn"], median["hand"])
        if "hand eager ops" in median:
            results[f"{mode} uncompiled"] = (median["nn"], median["hand eager ops"])
        if "nn graphed" in median and "hand graphed" in median:
            results[f"{mode} graphed"] = (median["nn graphed"], median["hand graphed"])
    return results


def uncompiled(fn: Callable[[], None]) -> Callable[[], None]:
    """``fn`` with HandLSTM's CUDA steps run as separate eager kernels (no torch.compile)."""

    def step() -> None:
        hand_lstm_cuda.COMPILE = False
        try:
            fn()
        finally:
            hand_lstm_cuda.COMPILE = True

    return step


class OutputOnly(nn.Module):
    """``model(x)[0]``: the per-step outputs alone (what a graphed callable may return)."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)[0]


def graph_variants(
    reference: nn.Module, hand: nn.Module, x: torch.Tensor, grad_out: torch.Tensor, mode: str
) -> dict[str, Callable[[], None] | None]:
    """Each model's whole step captured once as a CUDA graph and replayed (None if it fails)."""
    variants: dict[str, Callable[[], None] | None] = {}
    for name, model in (("nn graphed", reference), ("hand graphed", hand)):
        try:
            variants[name] = _graphed(OutputOnly(model), x, grad_out, mode)
        except Exception as error:  # noqa: BLE001 - report and carry on with the others
            print(f"{name} ({mode}): capture failed: {type(error).__name__}: {error}")
            variants[name] = None
    return variants


def _graphed(
    model: nn.Module, x: torch.Tensor, grad_out: torch.Tensor, mode: str
) -> Callable[[], None]:
    if mode == "fwd+bwd":
        graphed = torch.cuda.make_graphed_callables(model, (x,))

        def train_step() -> None:
            graphed(x).backward(grad_out)

        return train_step
    static_x = x.detach().clone()
    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(stream), torch.no_grad():
        for _ in range(3):  # warm-up (and compilation) outside the capture
            model(static_x)
    torch.cuda.current_stream().wait_stream(stream)
    graph = torch.cuda.CUDAGraph()
    with torch.no_grad(), torch.cuda.graph(graph):
        model(static_x)
    return graph.replay


def floor_shape(args: argparse.Namespace) -> tuple[float, float, float]:
    """Inference medians (ms) of nn.LSTM, HandLSTM, and HandLSTM's GEMMs alone.

    One layer: the GEMMs that HandLSTM's inference loop runs, on the same shapes, without any
    of the element-wise work between them (a floor for this design): ``x_t W_ih^T + b`` for
    ``INPUT_CHUNK`` steps at a time, and ``h_{t-1} W_hh^T`` added in place at every step.
    """
    from seqmodels.layers.hand_lstm.function import INPUT_CHUNK

    reference, hand, x, _ = _models(args, 1, False)
    w_ih_t, w_hh_t = (w.detach().t().contiguous() for w in (hand.weight_ih_l0, hand.weight_hh_l0))
    bias = (hand.bias_ih_l0 + hand.bias_hh_l0).detach()
    rows, h = x.detach().flatten(0, 1), torch.randn(args.batch, args.hidden, device=x.device)

    def gemms() -> None:
        with torch.inference_mode():
            gates = rows.new_empty(INPUT_CHUNK * args.batch, w_ih_t.size(1))
            for first in range(0, args.steps, INPUT_CHUNK):
                chunk = rows[first * args.batch : (first + INPUT_CHUNK) * args.batch]
                x_w = torch.addmm(bias, chunk, w_ih_t, out=gates[: chunk.size(0)])
                for z in x_w.split(args.batch):
                    z.addmm_(h, w_hh_t)

    fns = {**_steps(reference, hand, x, x)["inference"], "gemms": gemms}
    measure = _timer(torch.device(args.device))
    times: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(args.warmup):
        for fn in fns.values():
            fn()
    for _ in range(args.repeats):
        for name, fn in fns.items():
            times[name].append(measure(fn))
    nn_ms, hand_ms, gemm_ms = (statistics.median(times[k]) for k in ("nn", "hand", "gemms"))
    return nn_ms, hand_ms, gemm_ms


GEMMS = ("mkldnn::_linear_pointwise", "aten::mm", "aten::addmm", "aten::addmm_", "aten::bmm")


def profile_shape(args: argparse.Namespace, num_layers: int, bidirectional: bool) -> None:
    """Where the time goes: self CPU time per op (torch.profiler), per call of each model.

    The profiler adds ~1-2 us to every op it records, so many small ops look costlier than
    they are; the wall-clock medians above are the numbers to compare.
    """
    from torch.profiler import ProfilerActivity, profile

    runs = max(args.repeats // 4, 1)
    for mode, fns in _steps(*_models(args, num_layers, bidirectional)).items():
        for name, fn in fns.items():
            for _ in range(max(args.warmup, 1)):
                fn()
            with profile(activities=[ProfilerActivity.CPU]) as prof:
                for _ in range(runs):
                    fn()
            events = [e for e in prof.key_averages() if e.self_cpu_time_total > 0]
            events.sort(key=lambda e: -e.self_cpu_time_total)
            total = sum(e.self_cpu_time_total for e in events) / runs / 1e3
            gemm = sum(e.self_cpu_time_total for e in events if e.key in GEMMS) / runs / 1e3
            print(
                f"\n{name} {mode}, L={num_layers}{',bi' if bidirectional else ''}: "
                f"{total:.2f} ms profiled per call, of which GEMMs {gemm:.2f} ms"
            )
            print(f"  {'op':<40} {'calls':>7} {'self ms':>9}")
            for e in events[: args.profile]:
                ms = e.self_cpu_time_total / runs / 1e3
                print(f"  {e.key:<40} {e.count // runs:>7} {ms:>9.2f}")


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--input", type=int, default=128)
    parser.add_argument("--hidden", type=int, default=256)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument(
        "--floor",
        action="store_true",
        help="also time HandLSTM's inference GEMMs alone (1 layer) against both",
    )
    parser.add_argument(
        "--threads", type=int, default=0, help="torch.set_num_threads (0: torch's default)"
    )
    parser.add_argument(
        "--profile",
        type=int,
        default=0,
        metavar="N",
        help="also print the N costliest ops of each model (torch.profiler), per shape and mode",
    )
    args = parser.parse_args(argv)

    if args.threads:
        torch.set_num_threads(args.threads)
    where = torch.cuda.get_device_name() if args.device == "cuda" else "CPU"
    print(f"torch {torch.__version__}, {where}, threads {torch.get_num_threads()}")
    shapes = [(args.input, args.hidden, 1, False), (args.input, args.hidden, 2, True)]
    if args.device == "cuda":  # PyTorch's fastrnns benchmark shape
        torch.backends.cuda.matmul.allow_tf32 = False  # as nn.LSTM's cuDNN float32 default
        shapes.append((512, 512, 1, False))
    rows = []
    for n_in, hidden, num_layers, bidirectional in shapes:
        shape_args = argparse.Namespace(**{**vars(args), "input": n_in, "hidden": hidden})
        name = f"B={args.batch},T={args.steps},I={n_in},H={hidden},L={num_layers}" + (
            ",bi" if bidirectional else ""
        )
        for mode, (ref_ms, hand_ms) in bench_shape(shape_args, num_layers, bidirectional).items():
            rows.append((name, mode, ref_ms, hand_ms, hand_ms / ref_ms))
        if args.profile:
            profile_shape(shape_args, num_layers, bidirectional)

    header = f"{'shape':<34} {'mode':<18} {'nn ms':>9} {'hand ms':>9} {'hand/nn':>8}"
    print(header)
    print("-" * len(header))
    for name, mode, ref_ms, hand_ms, ratio in rows:
        print(f"{name:<34} {mode:<18} {ref_ms:>9.3f} {hand_ms:>9.3f} {ratio:>8.2f}")
    if args.floor:
        nn_ms, hand_ms, gemm_ms = floor_shape(args)
        print(
            f"\nfloor, 1 layer inference: nn {nn_ms:.2f} ms, hand {hand_ms:.2f} ms, hand's "
            f"GEMMs alone {gemm_ms:.2f} ms = {gemm_ms / nn_ms:.2f} x nn"
        )
    print()
    for name, mode, _, _, ratio in rows[1:] + rows[:1]:  # the first shape's fwd+bwd goes last
        print(f"ratio {mode} hand/nn ({name}): {ratio:.2f}")


if __name__ == "__main__":
    main()
