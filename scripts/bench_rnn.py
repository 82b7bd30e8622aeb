"""Time HandLSTM against torch.nn.LSTM, side by side in one process.

For each shape it times forward+backward (training) and forward under ``torch.inference_mode``
(interleaving the two models, after a warmup) and prints the medians, a table and the ratios
hand/nn. The last line is the forward+backward ratio of the first shape.

    python scripts/bench_rnn.py                 # CPU, B=64, T=100, I=128, H=256
    python scripts/bench_rnn.py --device cuda   # + fastrnns' H=512 shape, + CUDA graphs

On CUDA two more rows per shape replay each model's whole forward (and backward) as one CUDA
graph (``torch.cuda.make_graphed_callables``), which removes the per-step launch cost that
bounds HandLSTM's per-step kernels there; the graphed nn.LSTM row is the fair reference.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable, Sequence

import torch
from torch import nn

from seqmodels.models import HandLSTM, hand_lstm_cuda


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


def bench_shape(
    args: argparse.Namespace, num_layers: int, bidirectional: bool
) -> dict[str, tuple[float, float]]:
    """Median milliseconds ``{mode: (nn, hand)}`` for one shape."""
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

    measure = _timer(device)
    results = {}
    for mode, make in (("fwd+bwd", train_step), ("inference", infer_step)):
        fns = {"nn": make(reference), "hand": make(hand)}
        if device.type == "cuda":
            fns["hand eager ops"] = uncompiled(make(hand))
            graphed = graph_variants(reference, hand, x, grad_out, mode)
            fns |= {name: fn for name, fn in graphed.items() if fn is not None}
        times: dict[str, list[float]] = {name: [] for name in fns}
        for _ in range(args.warmup):
            for fn in fns.values():
                fn()
        for _ in range(args.repeats):
            for name, fn in fns.items():  # interleaved, so drift hits both alike
                times[name].append(measure(fn))
        results[mode] = (statistics.median(times["nn"]), statistics.median(times["hand"]))
        if "hand eager ops" in times:
            results[f"{mode} uncompiled"] = (
                statistics.median(times["nn"]),
                statistics.median(times["hand eager ops"]),
            )
        if "nn graphed" in times and "hand graphed" in times:
            results[f"{mode} graphed"] = (
                statistics.median(times["nn graphed"]),
                statistics.median(times["hand graphed"]),
            )
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


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--input", type=int, default=128)
    parser.add_argument("--hidden", type=int, default=256)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=20)
    args = parser.parse_args(argv)

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

    header = f"{'shape':<34} {'mode':<18} {'nn ms':>9} {'hand ms':>9} {'hand/nn':>8}"
    print(header)
    print("-" * len(header))
    for name, mode, ref_ms, hand_ms, ratio in rows:
        print(f"{name:<34} {mode:<18} {ref_ms:>9.3f} {hand_ms:>9.3f} {ratio:>8.2f}")
    print()
    for name, mode, _, _, ratio in rows[1:] + rows[:1]:  # the first shape's fwd+bwd goes last
        print(f"ratio {mode} hand/nn ({name}): {ratio:.2f}")


if __name__ == "__main__":
    main()
