"""Print a run's validation curve from its TensorBoard files: step, seconds, val/loss.

    python scripts/val_curve.py outputs/char_lm/runs/<run> [--tag val/loss] [--target 1.45]
    python scripts/val_curve.py RUN [RUN ...] --png curve.png   # also draw them on one chart

Seconds count from the run's first event; the last line is the time the curve first reached
``--target`` (at or below it, or at or above with ``--mode max``).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from tensorboard.backend.event_processing.event_accumulator import EventAccumulator


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", type=Path, nargs="+")
    parser.add_argument("--png", type=Path, help="draw tag (and also) against minutes here")
    parser.add_argument("--labels", help="comma-separated legend labels, one per run")
    parser.add_argument("--x", choices=("minutes", "step"), default="minutes", help="x axis")
    parser.add_argument("--tag", default="val/loss")
    parser.add_argument("--also", default="val/loss_windowed", help="a second tag to print")
    parser.add_argument("--target", type=float, default=1.45)
    parser.add_argument("--mode", choices=("min", "max"), default="min")
    args = parser.parse_args()
    labels = args.labels.split(",") if args.labels else [run.name for run in args.runs]
    curves = {label: curve(run, args) for label, run in zip(labels, args.runs)}
    if args.png:
        draw(curves, args)


def curve(run: Path, args: argparse.Namespace) -> list[tuple[float, float, float | None, int]]:
    """Print the run's curve; returns (seconds, tag value, also value, step) per validation."""
    events = sorted(run.glob("tensorboard/**/events.out.tfevents.*"))
    if not events:
        raise SystemExit(f"{run}: no TensorBoard event files under tensorboard/")
    print(run)
    points = []
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
        points.append((seconds, event.value, also.get(event.step), event.step))
        print(f"step {event.step:7d}  {seconds:8.1f} s  {args.tag} {event.value:.4f}{extra}")
        reached = event.value <= args.target if args.mode == "min" else event.value >= args.target
        if hit is None and reached:
            hit = seconds
    where = "not reached" if hit is None else f"{hit:.1f} s"
    print(f"time to {args.tag} {'<=' if args.mode == 'min' else '>='} {args.target}: {where}")
    return points


def draw(curves: dict[str, list[tuple[float, float, float | None, int]]], args) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 3.6), dpi=100)
    for label, points in curves.items():
        minutes = [p[0] / 60 if args.x == "minutes" else p[3] for p in points]
        (line,) = ax.plot(minutes, [p[1] for p in points], marker="o", label=f"{label}: {args.tag}")
        if any(p[2] is not None for p in points):
            also = [(m, p[2]) for m, p in zip(minutes, points) if p[2] is not None]
            ax.plot(
                *zip(*also), linestyle="--", color=line.get_color(), label=f"{label}: {args.also}"
            )
    ax.axhline(
        args.target, color="grey", linewidth=0.8, linestyle=":", label=f"target {args.target}"
    )
    ax.set_xlabel("minutes" if args.x == "minutes" else "optimizer step")
    ax.set_ylabel("nats per character" if "loss" in args.tag else args.tag)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(args.png)
    print(f"wrote {args.png}")


if __name__ == "__main__":
    main()
