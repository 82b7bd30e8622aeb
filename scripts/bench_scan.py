"""Throughput against sequence length: minGRU/minLSTM by parallel scan and by sequential steps,
beside nn.LSTM and the Transformer, side by side in one process.

Each encoder is built at its ``model=`` config's size (``conf/model/*.yaml``) over
128-d inputs; a training step is forward + backward of a loss over every output (no optimizer),
inference a forward under ``torch.inference_mode``. The same minGRU/minLSTM weights run both
ways (``encoder.parallel``), so the two columns differ only in how the recurrence is computed.
The best of ``--repeats`` timings counts (the least disturbed by other work on the machine).

    python scripts/bench_scan.py                               # CPU, 1 thread, 64..4096
    python scripts/bench_scan.py --lengths 64,512 --plot docs/figures/new-models-scan.png
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import torch
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from seqmodels.commands.train import CONFIG_DIR
from seqmodels.tasks.base import build_encoder

INPUT_SIZE = 128
# (label, model= config, how the min RNNs run)
RUNS = [
    ("mingru scan", "mingru", True),
    ("mingru sequential", "mingru", False),
    ("minlstm scan", "minlstm", True),
    ("minlstm sequential", "minlstm", False),
    ("lstm (nn.LSTM)", "lstm", None),
    ("transformer", "transformer", None),
]


def model_config(name: str) -> dict:
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        cfg = compose(config_name="train", overrides=[f"model={name}", "model.dropout=0.0"])
    return OmegaConf.to_container(cfg.model)


def best_seconds(step: Callable[[], None], repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        step()
        times.append(time.perf_counter() - start)
    return min(times)


def measure(encoder: torch.nn.Module, length: int, batch: int, repeats: int) -> dict[str, float]:
    x = torch.randn(batch, length, INPUT_SIZE)

    def train_step(x: torch.Tensor = x) -> None:
        encoder.zero_grad(set_to_none=True)
        encoder(x).square().mean().backward()

    def infer_step(x: torch.Tensor = x) -> None:
        with torch.inference_mode():
            encoder(x)

    train_step(x[:, :64])  # warm-up on a short slice: allocations, kernel choice
    infer_step(x[:, :64])

    tokens = batch * length
    return {
        "train": tokens / best_seconds(train_step, repeats),
        "infer": tokens / best_seconds(infer_step, repeats),
    }


def plot(results: list[dict], path: Path) -> None:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(10, 4), dpi=100)
    FigureCanvasAgg(fig)
    for k, mode in enumerate(("train", "infer")):
        ax = fig.add_subplot(1, 2, k + 1)
        for label in dict.fromkeys(r["run"] for r in results):
            rows = [r for r in results if r["run"] == label]
            style = "--" if "sequential" in label else "-"
            ax.loglog(
                [r["length"] for r in rows], [r[mode] for r in rows], style, marker="o", label=label
            )
        ax.set_xscale("log", base=2)
        ax.set_xlabel("sequence length")
        ax.set_ylabel("tokens per second")
        ax.set_title("training (forward + backward)" if mode == "train" else "inference")
        ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lengths", default="64,128,256,512,1024,2048,4096")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument(
        "--transformer-max",
        type=int,
        default=1024,
        help="longest length for the Transformer (its attention grows with the square)",
    )
    parser.add_argument("--plot", type=Path, default=None, help="write the curves as a PNG")
    parser.add_argument("--json", type=Path, default=None, help="write every row as JSON")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    lengths = [int(n) for n in args.lengths.split(",")]
    encoders = {}
    for _, name, _ in RUNS:
        if name not in encoders:
            encoders[name] = build_encoder(model_config(name), INPUT_SIZE)
    print(f"torch {torch.__version__}, CPU, {args.threads} thread(s), batch {args.batch}")
    for name, enc in encoders.items():
        print(f"  {name}: {sum(p.numel() for p in enc.parameters()):,} parameters")
    results = []
    for length in lengths:
        for label, name, parallel in RUNS:
            if name == "transformer" and length > args.transformer_max:
                continue
            encoder = encoders[name]
            if parallel is not None:
                encoder.parallel = parallel
            row = {
                "run": label,
                "length": length,
                **measure(encoder, length, args.batch, args.repeats),
            }
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
    print("| length | " + " | ".join(label for label, _, _ in RUNS) + " |  (training tokens/s)")
    print("|---" * (len(RUNS) + 1) + "|")
    for length in lengths:
        cells = []
        for label, _, _ in RUNS:
            row = [r for r in results if r["run"] == label and r["length"] == length]
            cells.append(f"{row[0]['train']:,.0f}" if row else "-")
        print(f"| {length} | " + " | ".join(cells) + " |")
    by = {(r["run"], r["length"]): r for r in results}
    for cell in ("mingru", "minlstm"):
        ratios = [
            f"{n}: {by[(f'{cell} scan', n)]['train'] / by[(f'{cell} sequential', n)]['train']:.1f}x"
            for n in lengths
        ]
        print(f"{cell} training, scan / sequential: " + ", ".join(ratios))


if __name__ == "__main__":
    main()
