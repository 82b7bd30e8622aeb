"""Print a run's validation curve from its TensorBoard files: step, seconds, val/loss.

    python scripts/val_curve.py outputs/char_lm/runs/<run> [--tag val/loss] [--target 1.45]

Seconds count from the run's first event; the last line is the time the curve first reached
``--target`` (at or below it, or at or above with ``--mode max``).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from tensorboard.backend.event_processing.event_accumulator import EventAccumulator


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", type=Path)
    parser.add_argument("--tag", default="val/loss")
    parser.add_argument("--also", default="val/loss_windowed", help="a second tag to print")
    parser.add_argument("--target", type=float, default=1.45)
    parser.add_argument("--mode", choices=("min", "max"), default="min")
    args = parser.parse_args()
    events = sorted(args.run.glob("tensorboard/**/events.out.tfevents.*"))
    if not events:
        raise SystemExit(f"{args.run}: no TensorBoard event files under tensorboard/")
    acc = EventAccumulator(str(events[0].parent))
    acc.Reload()
    start = acc.FirstEventTimestamp()
    also = (
        {e.step: e.value for e in acc.Scalars(args.also)}
        if args.also in acc.Tags()["scalars"]
        else {}
    )
    hit, last = None, -1
    for event in acc.Scalars(args.tag):
        if event.step <= last:  # the final metrics, logged again beside the hparams
            continue
        last = event.step
        extra = f"  {args.also} {also[event.step]:.4f}" if event.step in also else ""
        seconds = event.wall_time - start
        print(f"step {event.step:7d}  {seconds:8.1f} s  {args.tag} {event.value:.4f}{extra}")
        reached = event.value <= args.target if args.mode == "min" else event.value >= args.target
        if hit is None and reached:
            hit = seconds
    where = "not reached" if hit is None else f"{hit:.1f} s"
    print(f"time to {args.tag} {'<=' if args.mode == 'min' else '>='} {args.target}: {where}")


if __name__ == "__main__":
    main()
