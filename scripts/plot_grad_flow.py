"""Plot the gradient-flow curves saved by runs (``<run dir>/grad_flow.jsonl``), one per run.

    python scripts/plot_grad_flow.py docs/grad_flow.png rnn=<run dir> lstm=<run dir> gru=<run dir>

Each run shows its first measurement (dashed, at step 0) and its last (solid). Prints the PNG's
path last.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from seqmodels.commands.long_range_report import plot_grad_flow
from seqmodels.core.errors import UserError


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("output", type=Path, help="the PNG to write")
    parser.add_argument("runs", nargs="+", help="LABEL=RUN_DIR, one per curve")
    parser.add_argument("--curve", default="inputs", choices=("inputs", "hidden", "cell"))
    args = parser.parse_args(argv)
    runs = {}
    for item in args.runs:
        label, sep, run_dir = item.partition("=")
        if not sep:
            print(f"error: expected LABEL=RUN_DIR, got {item!r}", file=sys.stderr)
            return 2
        runs[label] = Path(run_dir)
    try:
        plot_grad_flow(runs, args.output, curve=args.curve)
    except UserError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    print(args.output)
    return 0


if __name__ == "__main__":
    sys.exit(main())
