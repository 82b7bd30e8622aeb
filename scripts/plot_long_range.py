"""Plot a long-range sweep: the main metric against sequence length, one line per model.

    python scripts/train.py -m experiment=long_range_sweep hydra.sweep.dir=<sweep>
    python scripts/plot_long_range.py docs/long_range.png <sweep> [<more sweeps> ...]

Prints one row per job (model, length, metric) and, last, the PNG's path.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from seqmodels.commands.long_range_report import collect_sweep, plot_sweep
from seqmodels.core.errors import UserError
from seqmodels.tasks.long_range import ADDING_CHANCE_MSE


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("output", type=Path, help="the PNG to write")
    parser.add_argument(
        "sweep_dirs", type=Path, nargs="+", help="multirun folders of long_range jobs"
    )
    parser.add_argument("--metric", default="test/mse", help="a scalar tag (default test/mse)")
    parser.add_argument(
        "--chance",
        type=float,
        default=ADDING_CHANCE_MSE,
        help="a horizontal chance line (default 1/6, the adding MSE); 0: none",
    )
    parser.add_argument(
        "--title",
        default="Adding problem: test MSE (stop at val MSE < 0.01 or 6000 steps)",
    )
    args = parser.parse_args(argv)
    try:
        rows = [row for folder in args.sweep_dirs for row in collect_sweep(folder, args.metric)]
    except UserError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    for row in sorted(rows, key=lambda r: (r["model"], r["length"])):
        print(f"{row['model']:<12} length {row['length']:>5}  {args.metric} {row[args.metric]:.4f}")
    plot_sweep(rows, args.metric, args.output, chance=args.chance or None, title=args.title)
    print(args.output)
    return 0


if __name__ == "__main__":
    sys.exit(main())
