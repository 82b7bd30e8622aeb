"""Throughput against sequence length: minGRU/minLSTM by every scan form, beside nn.LSTM and the
Transformer, side by side in one process.

Each encoder is built at its ``model=`` config's size (``conf/model/*.yaml``) over 128-d inputs;
a training step is forward + backward of a loss over every output (no optimizer), inference a
forward under ``torch.inference_mode``. The same minGRU/minLSTM weights run every form
(``encoder.scan``: native, loop, chunked, log; ``auto``, the configs' default, is one of them),
so the columns differ only in how the recurrence is computed. Runs are timed round-robin (each
repeat times every run once at a length), so a change in the machine's load hits all of them
alike; the median of ``--repeats`` counts. The last two lines give the default (``scan: auto``)
minGRU and minLSTM against nn.LSTM, training then inference.

    python scripts/bench_scan.py                               # CPU, 1 thread, 64..4096
    python scripts/bench_scan.py --lengths 512,2048 --plot docs/figures/new-models-scan.png
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import torch
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from seqmodels.commands.train import CONFIG_DIR
from seqmodels.layers.linear_scan import FORMS
from seqmodels.layers.min_rnn import scan_form
from seqmodels.tasks.base import build_encoder

INPUT_SIZE = 128
LSTM = "lstm (nn.LSTM)"
# (label, model= config, the min RNNs' scan form)
RUNS = [(f"{cell} {form}", cell, form) for cell in ("mingru", "minlstm") for form in FORMS]
RUNS += [(LSTM, "lstm", None), ("transformer", "transformer", None)]


def model_config(name: str) -> dict:
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        cfg = compose(config_name="train", overrides=[f"model={name}", "model.dropout=0.0"])
    return OmegaConf.to_container(cfg.model)


def median_seconds(steps: dict[str, Callable[[], None]], repeats: int) -> dict[str, float]:
    """Median seconds per call of each step, timed in turn ``repeats`` times."""
    times: dict[str, list[float]] = {label: [] for label in steps}
    for _ in range(repeats):
        for label, step in steps.items():
            start = time.perf_counter()
            step()
            times[label].append(time.perf_counter() - start)
    return {label: statistics.median(t) for label, t in times.items()}


def step(encoder: torch.nn.Module, form: str | None, x: torch.Tensor, mode: str) -> Callable:
    def train_step() -> None:
        if form is not None:
            encoder.scan = form
        encoder.zero_grad(set_to_none=True)
        encoder(x).square().mean().backward()

    def infer_step() -> None:
        if form is not None:
            encoder.scan = form
        with torch.inference_mode():
            encoder(x)

    return train_step if mode == "train" else infer_step


def plot(results: list[dict], path: Path) -> None:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(12, 4), dpi=100)
    FigureCanvasAgg(fig)
    for k, mode in enumerate(("train", "infer")):
        ax = fig.add_subplot(1, 2, k + 1)
        for label in dict.fromkeys(r["run"] for r in results):
            rows = [r for r in results if r["run"] == label]
            style = "-" if "native" in label or "(" in label else "--"
            ax.loglog(
                [r["length"] for r in rows], [r[mode] for r in rows], style, marker="o", label=label
            )
        ax.set_xscale("log", base=2)
        ax.set_xlabel("sequence length")
        ax.set_ylabel("tokens per second")
        ax.set_title("training (forward + backward)" if mode == "train" else "inference")
        ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.02, 1.0))  # beside, not on, the lines
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lengths", default="64,128,256,512,1024,2048,4096")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument(
        "--transformer-max",
        type=int,
        default=1024,
        help="longest length for the Transformer (its attention grows with the square)",
    )
    parser.add_argument(
        "--forms", default=",".join(FORMS), help="scan forms to time (auto's is always timed)"
    )
    parser.add_argument("--plot", type=Path, default=None, help="write the curves as a PNG")
    parser.add_argument("--json", type=Path, default=None, help="write every row as JSON")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    lengths = [int(n) for n in args.lengths.split(",")]
    forms = {*args.forms.split(","), scan_form("auto", torch.device("cpu"))}
    runs = [run for run in RUNS if run[2] is None or run[2] in forms]
    encoders = {}
    for _, name, _ in runs:
        if name not in encoders:
            encoders[name] = build_encoder(model_config(name), INPUT_SIZE)
    print(f"torch {torch.__version__}, CPU, {args.threads} thread(s), batch {args.batch}")
    for name, enc in encoders.items():
        print(f"  {name}: {sum(p.numel() for p in enc.parameters()):,} parameters")
    print(f"  scan: auto runs as {scan_form('auto', torch.device('cpu'))} here")
    results = []
    for length in lengths:
        x = torch.randn(args.batch, length, INPUT_SIZE)
        timed = [r for r in runs if r[1] != "transformer" or length <= args.transformer_max]
        rates = {}
        for mode in ("train", "infer"):
            for _, name, form in timed:  # warm-up on a short slice (allocations, the build)
                step(encoders[name], form, x[:, :64], mode)()
            steps = {label: step(encoders[name], form, x, mode) for label, name, form in timed}
            seconds = median_seconds(steps, args.repeats)
            rates[mode] = {label: args.batch * length / s for label, s in seconds.items()}
        for label, _, _ in timed:
            row = {"run": label, "length": length, **{m: rates[m][label] for m in rates}}
            results.append(row)
            print(
                f"  T={length:5d} {label:20s} train {row['train']:>10,.0f} tok/s   "
                f"infer {row['infer']:>10,.0f} tok/s",
                flush=True,
            )
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))
    if args.plot:
        plot(results, args.plot)
    print()
    print("| length | " + " | ".join(label for label, _, _ in runs) + " |  (training tokens/s)")
    print("|---" * (len(runs) + 1) + "|")
    for length in lengths:
        cells = []
        for label, _, _ in runs:
            row = [r for r in results if r["run"] == label and r["length"] == length]
            cells.append(f"{row[0]['train']:,.0f}" if row else "-")
        print(f"| {length} | " + " | ".join(cells) + " |")
    by = {(r["run"], r["length"]): r for r in results}
    auto = scan_form("auto", torch.device("cpu"))
    for mode in ("train", "infer"):
        ratios = [
            f"{cell} {n}: {by[(f'{cell} {auto}', n)][mode] / by[(LSTM, n)][mode]:.2f}x"
            for cell in ("mingru", "minlstm")
            for n in lengths
        ]
        print(f"{mode}, scan: auto ({auto}) / nn.LSTM: " + ", ".join(ratios))


if __name__ == "__main__":
    main()
