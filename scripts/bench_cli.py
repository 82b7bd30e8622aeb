"""Cold-process time to first output of ``scripts/tag.py`` and ``scripts/generate.py``.

Each run is a new Python process, timed from its start to the first byte it writes to stdout
(the answer a user waits for), beside ``python -c "import torch"`` as the floor no torch
program can go under. Runs of the commands alternate, so load on the machine hits all alike;
each line gives the median and the range over ``--runs``. Without ``--tag-ckpt``/``--lm-ckpt``
it first trains a slot tagger (ATIS) and a char LM (tiny Shakespeare) at the default model
sizes for a few steps (what is timed does not depend on how well they are trained).

    python scripts/bench_cli.py --runs 7
    python scripts/bench_cli.py --tag-ckpt <slot ckpt> --lm-ckpt <char-LM ckpt>

The last line is the ratio of each command's median to the floor's.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PYTHON = sys.executable
SENTENCE = "show me flights from denver to boston on monday"


def train_checkpoint(out: Path, *overrides: str) -> Path:
    """A checkpoint of a few training steps at the default model sizes."""
    subprocess.run(
        [PYTHON, str(REPO / "scripts" / "train.py"), *overrides, "trainer.max_epochs=1",
         "trainer.limit_train_batches=5", "trainer.limit_val_batches=2", "test=false",
         "logger=none", "num_threads=1", f"hydra.run.dir={out}"],
        check=True, capture_output=True, cwd=out.parent,
    )  # fmt: skip
    return out / "checkpoints" / "last.ckpt"


def first_output(command: list[str], stdin: Path | None = None) -> tuple[float, float]:
    """Seconds from starting ``command`` to its first byte on stdout, and to its exit."""
    with open(stdin or os.devnull, "rb") as source:
        start = time.perf_counter()
        process = subprocess.Popen(
            command, stdin=source, stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=REPO
        )
        assert process.stdout is not None
        first = process.stdout.read(1)
        seen = time.perf_counter()
        _, err = process.communicate()
        done = time.perf_counter()
    if process.returncode != 0 or not first:
        raise SystemExit(f"{' '.join(command)} failed:\n{err.decode()[-2000:]}")
    return seen - start, done - start


def summary(values: list[float]) -> str:
    return f"median {statistics.median(values):.2f} s (range {min(values):.2f}-{max(values):.2f})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5, help="processes per command")
    parser.add_argument("--tag-ckpt", type=Path, help="slot-filling checkpoint (default: new)")
    parser.add_argument("--lm-ckpt", type=Path, help="char-LM checkpoint (default: new)")
    parser.add_argument(
        "--lines",
        type=Path,
        default=Path(os.environ.get("SEQMODELS_DATA_DIR", "data")) / "atis" / "test" / "seq.in",
        help="sentences to pipe through tag.py (default: ATIS test, 893 lines)",
    )
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        tag_ckpt = args.tag_ckpt or train_checkpoint(Path(tmp) / "tag")
        lm_ckpt = args.lm_ckpt or train_checkpoint(Path(tmp) / "lm", "task=char_lm")
        commands = {
            "python -c 'import torch'": ([PYTHON, "-c", "import torch; print(1)"], None),
            "tag.py text=<one sentence>": (
                [PYTHON, "scripts/tag.py", f"ckpt_path={tag_ckpt}", f"text='{SENTENCE}'"],
                None,
            ),
            "generate.py length=200": (
                [PYTHON, "scripts/generate.py", f"ckpt_path={lm_ckpt}", "length=200"],
                None,
            ),
        }
        if args.lines.is_file():
            lines = sum(1 for _ in args.lines.open(encoding="utf-8"))
            name = f"tag.py < {args.lines.name} ({lines} lines)"
            commands[name] = ([PYTHON, "scripts/tag.py", f"ckpt_path={tag_ckpt}"], args.lines)
        first: dict[str, list[float]] = {name: [] for name in commands}
        total: dict[str, list[float]] = {name: [] for name in commands}
        for _ in range(args.runs):
            for name, (command, stdin) in commands.items():
                seen, done = first_output(command, stdin)
                first[name].append(seen)
                total[name].append(done)

    load = os.getloadavg()[0]
    print(f"{args.runs} cold processes per command, interleaved; load average {load:.1f}")
    for name in commands:
        print(f"  {name:<40} first output {summary(first[name])}; exit {summary(total[name])}")
    floor = statistics.median(first["python -c 'import torch'"])
    ratios = ", ".join(
        f"{name.split()[0]} {statistics.median(first[name]) / floor:.2f}"
        for name in list(commands)[1:3]
    )
    print(f"first output / import torch alone (medians): {ratios}")


if __name__ == "__main__":
    main()
