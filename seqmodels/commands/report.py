"""Compare the jobs of a sweep: ``python scripts/report.py <folder>`` writes report.md and plots.

``<folder>`` is a multirun folder (``-m`` or an Optuna search: numbered job folders), a folder of
single runs (``outputs/<task>/runs``), or one run. A job is any folder below it with a
``.hydra/config.yaml`` of a training run; its numbers come from its TensorBoard event files.
For each task in the folder, ``report.md`` gets a table (one row per job: the overrides that
differ between jobs, the best value of the main validation metric, every test metric, the
parameter count and the wall time; sorted by the main metric, failed and untested jobs last,
never dropped) and two PNGs: the main validation metric per epoch of every job on one chart,
and each job's final test value of that metric as labelled bars. Epochs count from 0, as
Lightning, TensorBoard's ``epoch`` scalar and the checkpoint names do: the best epoch 3 is
``checkpoints/epoch_003.ckpt``.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import re
import statistics
from dataclasses import dataclass, field
from pathlib import Path
from typing import NoReturn

import yaml
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from seqmodels.core.errors import UserError
from seqmodels.plumbing.names import short_number

log = logging.getLogger(__name__)


class ReportError(UserError, ValueError):
    """The folder holds no training runs to report on."""


@dataclass
class Job:
    """One training run: its config, overrides and what its event files hold."""

    path: Path
    name: str
    task: str
    monitor: str
    mode: str
    overrides: dict[str, str]
    curve: list[tuple[int, float]] = field(default_factory=list)  # (epoch from 0, val metric)
    test: dict[str, float] = field(default_factory=dict)
    wall_s: float | None = None
    params: int | None = None
    error: str | None = None

    @property
    def best(self) -> tuple[int, float] | None:
        """The (epoch, value) of the best main validation value."""
        if not self.curve:
            return None
        pick = min if self.mode == "min" else max
        return pick(self.curve, key=lambda point: point[1])

    @property
    def status(self) -> str:
        if self.test:  # tested to the end (an ERROR line before would be an earlier attempt's)
            return "ok"
        if self.error:
            return f"failed: {self.error}"
        if not self.curve:
            return "failed or not started: no metrics logged"
        return "no test metrics (test=false, stopped, or still running)"


def read_events(tb_dir: Path, job: Job) -> None:
    """Fill ``job.curve``, ``job.test`` and ``job.wall_s`` from the event files in ``tb_dir``.

    Only values Lightning logged during fit/test count: they come with an ``epoch`` scalar at
    the same step of the same file (the final hparams summary repeats them at step 0 without).
    """
    times: list[float] = []
    for event_file in sorted(tb_dir.glob("events.out.tfevents.*")):
        acc = EventAccumulator(str(event_file), size_guidance={"scalars": 0})
        acc.Reload()
        tags = acc.Tags()["scalars"]
        epochs = {e.step: int(e.value) for e in acc.Scalars("epoch")} if "epoch" in tags else {}
        for tag in tags:
            for event in acc.Scalars(tag):
                times.append(event.wall_time)
                if event.step not in epochs:
                    continue
                if tag == job.monitor:
                    job.curve.append((epochs[event.step], event.value))
                elif tag.startswith("test/") and "_per_type/" not in tag:
                    job.test[tag] = event.value  # per type: a table of its own (--per-type)
    if times:
        job.wall_s = max(times) - min(times)


def count_parameters(job_dir: Path) -> int | None:
    """Parameters of the model in the job's last (or any) checkpoint; None without one."""
    ckpts = sorted((job_dir / "checkpoints").glob("*.ckpt"), key=lambda p: p.name != "last.ckpt")
    if not ckpts:
        return None
    from seqmodels.commands.evaluate import load_module  # Lightning and the tasks: only when needed

    try:
        module, _ = load_module(ckpts[0])
    except Exception as err:  # e.g. a task this version lacks: a report still gets written
        log.warning("%s: cannot count parameters (%s)", ckpts[0], err)
        return None
    return sum(p.numel() for p in module.parameters())


def last_error(log_file: Path) -> str | None:
    """The last ERROR line of a run's log (what ``errors_reported`` wrote), if any."""
    if not log_file.is_file():
        return None
    errors = re.findall(
        r"\]\[ERROR\] - (.*)", log_file.read_text(encoding="utf-8", errors="replace")
    )
    return errors[-1].strip() if errors else None


def parse_overrides(lines: list[str]) -> dict[str, str]:
    """``key=value`` overrides as a dict (``+``/``++`` prefixes dropped)."""
    pairs = (line.lstrip("+~").split("=", 1) for line in lines)
    return {p[0]: p[1] if len(p) > 1 else "" for p in pairs}


def read_job(job_dir: Path, root: Path) -> Job | None:
    """The job in ``job_dir``, or None when it is not a training run (e.g. an eval folder)."""
    config = yaml.safe_load((job_dir / ".hydra" / "config.yaml").read_text(encoding="utf-8"))
    task = (config or {}).get("task")
    if not isinstance(task, dict) or "monitor" not in task:
        return None
    overrides_file = job_dir / ".hydra" / "overrides.yaml"
    overrides = yaml.safe_load(overrides_file.read_text()) if overrides_file.is_file() else []
    name = str(job_dir.relative_to(root)) if job_dir != root else job_dir.name
    job = Job(
        job_dir, name, task["name"], task["monitor"], task["mode"], parse_overrides(overrides or [])
    )
    if (job_dir / "tensorboard").is_dir():
        read_events(job_dir / "tensorboard", job)
    job.params = count_parameters(job_dir)
    job.error = next(filter(None, map(last_error, sorted(job_dir.glob("*.log")))), None)
    return job


def find_jobs(root: Path) -> list[Job]:
    """Every training run at or below ``root``."""
    dirs = sorted({p.parent.parent for p in root.rglob(".hydra/config.yaml")}, key=job_order)
    jobs = [job for d in dirs if (job := read_job(d, root)) is not None]
    if not jobs:
        raise ReportError(
            f"{root} holds no training runs (folders with .hydra/config.yaml from "
            "scripts/train.py); give a multirun folder, an Optuna search folder or a runs folder"
        )
    return jobs


def job_order(path: Path) -> tuple:
    """Numbered job folders (``7``, ``10_atis-gru_...``) in numeric order, others by name."""

    def key(part: str) -> tuple:
        number = part.split("_", 1)[0]
        return (0, int(number), part) if number.isdigit() else (1, 0, part)

    return tuple(key(part) for part in path.parts)


def differing(jobs: list[Job]) -> list[str]:
    """Override keys whose value is not the same in every job (in first-seen order)."""
    keys = list(dict.fromkeys(k for job in jobs for k in job.overrides))
    return [k for k in keys if len({job.overrides.get(k) for job in jobs}) > 1]


def label(job: Job, keys: list[str]) -> str:
    """The job's number and the overrides that tell it apart (``3: lr=0.01 dropout=0.5``).

    Keys are shortened to their last part where that stays unambiguous; a job folder without
    a Hydra job number keeps its whole name.
    """
    short = {k: k.rsplit(".", 1)[-1] for k in keys}
    if len(set(short.values())) < len(short):
        short = {k: k for k in keys}
    parts = [f"{short[k]}={short_number(job.overrides[k])}" for k in keys if k in job.overrides]
    return f"{job_id(job)}: {' '.join(parts)}" if parts else job.name


def job_id(job: Job) -> str:
    """A Hydra job's number (``3`` for ``3_atis-gru_...``); any other folder's whole name."""
    number, _, rest = job.name.partition("_")
    return number if number.isdigit() and rest else job.name


def ranked(jobs: list[Job]) -> list[Job]:
    """Best main validation value first; jobs without one last, in folder order."""
    sign = 1 if jobs[0].mode == "min" else -1
    return sorted(jobs, key=lambda j: (j.best is None, sign * j.best[1] if j.best else 0))


def fmt(value: float | None, digits: int = 4) -> str:
    return "—" if value is None or not math.isfinite(value) else f"{value:.{digits}f}"


def table(jobs: list[Job], keys: list[str]) -> list[str]:
    """The markdown rows of one task's jobs."""
    monitor = jobs[0].monitor
    tests = sorted({k for job in jobs for k in job.test}, key=lambda k: (k != test_of(monitor), k))
    header = ["job", *keys, f"best {monitor} (epoch)", *tests, "params", "wall time", "status"]
    rows = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for job in jobs:
        best = f"{fmt(job.best[1])} ({job.best[0]})" if job.best else "—"
        cells = [
            job.name,
            *(short_number(job.overrides.get(k, "")) for k in keys),
            best,
            *(fmt(job.test.get(k)) for k in tests),
            f"{job.params:,}" if job.params is not None else "—",
            f"{job.wall_s:.0f} s" if job.wall_s is not None else "—",
            job.status.replace("|", "\\|"),
        ]
        rows.append("| " + " | ".join(cells) + " |")
    return rows


def test_of(monitor: str) -> str:
    """``val/bpc`` -> ``test/bpc``."""
    return "test/" + monitor.split("/", 1)[1]


def plot_curves(jobs: list[Job], keys: list[str], path: Path) -> None:
    """The main validation metric per epoch, one line per job."""
    curves_figure(jobs, keys).savefig(path)


def curves_figure(jobs: list[Job], keys: list[str]) -> Figure:
    """The chart of :func:`plot_curves`: epochs on whole-number ticks, even for one epoch."""
    fig = Figure(figsize=(7, 4), dpi=100, layout="constrained")
    ax = fig.add_subplot()
    styles = [("-", "o"), ("--", "s"), (":", "^"), ("-.", "D")]  # jobs that tie stay visible
    for i, job in enumerate(jobs):
        if job.curve:
            epochs, values = zip(*sorted(job.curve))
            line, marker = styles[i % len(styles)]
            ax.plot(epochs, values, linestyle=line, marker=marker, label=label(job, keys))
    ax.set(xlabel="epoch", ylabel=jobs[0].monitor, title=f"{jobs[0].task}: {jobs[0].monitor}")
    # min_n_ticks=1: a one-epoch chart spans 0.96 ... 1.04 and would fall back to fractions.
    ax.xaxis.set_major_locator(MaxNLocator(integer=True, min_n_ticks=1))
    ax.grid(alpha=0.3)
    if any(job.curve for job in jobs):
        ax.legend(fontsize="small")
    return fig


def plot_tests(jobs: list[Job], keys: list[str], path: Path) -> None:
    """Each job's final test value of the main metric as a labelled horizontal bar."""
    metric = test_of(jobs[0].monitor)
    labels = [label(job, keys) for job in jobs]
    width = max(7.0, 4.0 + 0.075 * max(map(len, labels)))  # room for the labels beside the bars
    fig = Figure(figsize=(width, 1.2 + 0.45 * len(jobs)), dpi=100, layout="constrained")
    ax = fig.add_subplot()
    values = [job.test.get(metric, 0.0) for job in jobs]
    bars = ax.barh(labels, values, color="tab:blue")
    texts = [
        f"{job.test[metric]:.4f}" if metric in job.test else job.status.split(":")[0]
        for job in jobs
    ]  # a job without a test value gets no bar, and its status instead
    ax.bar_label(bars, labels=texts, padding=3)
    ax.invert_yaxis()  # best first, as in the table
    ax.margins(x=0.2)
    ax.set(xlabel=metric, title=f"{jobs[0].task}: {metric} per job")
    fig.savefig(path)


PER_TYPE_JOBS = 6  # columns of the per-type table: the best jobs (mean ± sd over all)


def per_type_f1(jobs: list[Job]) -> list[str]:
    """Markdown rows: test F1 per span type (a row each, from each job's
    ``test_span_report.json``), a column for each of the best ``PER_TYPE_JOBS`` jobs (by their
    number, as in the table above) and the mean ± sd over every job. Types run down the page:
    SNIPS's 39 types as columns made a table 40 columns wide."""
    reports = {}
    for job in jobs:
        path = job.path / "test_span_report.json"
        if path.is_file():
            reports[job.name] = json.loads(path.read_text(encoding="utf-8"))
    if not reports:
        return []
    types = [*sorted({t for r in reports.values() for t in r["per_type"]}), "micro avg"]
    scores = {
        name: {**r["per_type"], "micro avg": r["micro"]} for name, r in reports.items()
    }  # fmt: skip
    shown = [job for job in jobs if job.name in reports][:PER_TYPE_JOBS]
    spread = len(reports) > 1
    header = ["type", *(job_id(job) for job in shown)]
    header += [f"mean ± sd ({len(reports)} jobs)"] if spread else []
    rows = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for kind in types:
        cells = [fmt(scores[job.name].get(kind, {}).get("f1"), 2) for job in shown]
        if spread:
            values = [v for s in scores.values() if (v := s.get(kind, {}).get("f1")) is not None]
            sd = statistics.stdev(values) if len(values) > 1 else 0.0
            cells.append(f"{statistics.mean(values):.2f} ± {sd:.2f}" if values else "—")
        rows.append("| " + " | ".join([kind, *cells]) + " |")
    return rows


def optuna_summary(root: Path) -> list[str]:
    """The best parameters and value of an Optuna search, if ``root`` is one."""
    results = root / "optimization_results.yaml"
    if not results.is_file():
        return []
    found = yaml.safe_load(results.read_text(encoding="utf-8")) or {}
    params = ", ".join(f"`{k}={v}`" for k, v in (found.get("best_params") or {}).items())
    return [f"Optuna: best value {found.get('best_value')} with {params}", ""]


def report(root: str | Path, per_type: bool = False) -> Path:
    """Write ``report.md`` and the PNGs into ``root``; return the report's path.

    ``per_type``: also a table of each job's test F1 per span/entity type (slot filling).
    """
    root = Path(root).expanduser().resolve()
    if not root.is_dir():
        raise ReportError(f"{root} is not a folder")
    jobs = find_jobs(root)
    count = f"{len(jobs)} job{'' if len(jobs) == 1 else 's'}"
    lines = [f"# Report: {root.name}", "", f"{count} in `{root}`.", ""]
    lines += optuna_summary(root)
    for task in dict.fromkeys(job.task for job in jobs):
        group = ranked([job for job in jobs if job.task == task])
        keys = differing(group)
        stem = f"{task}_{group[0].monitor.split('/', 1)[1]}"
        plot_curves(group, keys, root / f"{stem}_val.png")
        plot_tests(group, keys, root / f"{stem}_test.png")
        lines += [f"## {task} (main metric {group[0].monitor}, {group[0].mode})", ""]
        lines += table(group, keys)
        lines += ["", "Epochs count from 0, as in checkpoint names: epoch 3 is `epoch_003.ckpt`."]
        lines += ["", f"![{group[0].monitor} per epoch]({stem}_val.png)", ""]
        lines += [f"![{test_of(group[0].monitor)} per job]({stem}_test.png)", ""]
        if per_type and (rows := per_type_f1(group)):
            lines += [f"### {task}: test F1 per type", "", *rows, ""]
    path = root / "report.md"
    path.write_text("\n".join(lines), encoding="utf-8")
    return path


class OneLineParser(argparse.ArgumentParser):
    """argparse, but a wrong command line is one line and exit status 1, as everywhere else."""

    def error(self, message: str) -> NoReturn:
        usage = " ".join(self.format_usage().split())
        self.exit(1, f"error: {message} ({usage})\n")


def main(argv: list[str] | None = None) -> None:
    """``python scripts/report.py <folder>``: prints the report and where it was written."""
    parser = OneLineParser(description=__doc__.split("\n")[0])
    parser.add_argument("folder", help="a multirun, Optuna search, or runs folder (or one run)")
    parser.add_argument(
        "--per-type",
        action="store_true",
        help="also tabulate each job's test F1 per span type (slot filling, NER)",
    )
    args = parser.parse_args(argv)
    try:
        path = report(args.folder, per_type=args.per_type)
    except UserError as err:
        parser.exit(1, f"error: {err}\n")
    print(path.read_text(encoding="utf-8"))
    print(f"wrote {path} and its PNGs")
