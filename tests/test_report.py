"""scripts/report.py on a real sweep (two jobs and a failing one) and on a folder of runs."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from conftest import TINY, requires_data, run_script, run_train_cli
from matplotlib.image import imread
from tb_events import scalar_tags

from seqmodels.commands.evaluate import load_module
from seqmodels.commands.report import ReportError, curves_figure, find_jobs, main, report

TINY_CLI = [o for o in TINY if not o.startswith("model.hidden_size")]


@pytest.fixture(scope="module")
def sweep(tmp_path_factory) -> Path:
    """``-m model.hidden_size=8,16,0`` on tiny ATIS: two jobs complete, the third fails."""
    work = tmp_path_factory.mktemp("sweep")
    result = run_train_cli(
        "-m", "model.hidden_size=8,16,0", *TINY_CLI, f"hydra.sweep.dir={work / 'sweep'}", cwd=work
    )
    assert result.returncode != 0 and "model.hidden_size must be a positive" in result.stderr
    return work / "sweep"


def rows(markdown: str) -> list[list[str]]:
    """The cells of every table row below the header."""
    lines = [line for line in markdown.splitlines() if line.startswith("| ")]
    return [[cell.strip() for cell in line.strip("|").split(" | ")] for line in lines[1:]]


def assert_png(path: Path) -> None:
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", path
    height, width, _ = imread(path).shape
    assert width >= 600 and height >= 150


@requires_data
def test_report_cli_on_a_sweep_with_a_failed_job(sweep: Path, tmp_path: Path) -> None:
    result = run_script("report.py", str(sweep), cwd=tmp_path, timeout=120)
    assert result.returncode == 0, result.stderr[-3000:]
    text = (sweep / "report.md").read_text()
    assert text in result.stdout
    header = next(line for line in text.splitlines() if line.startswith("| job"))
    assert header.startswith("| job | model.hidden_size | best val/f1 (epoch) | test/f1 |")
    table = rows(text)
    # job folders: <number>_<what the job is>
    assert [(row[0].split("_")[0], row[1]) for row in table][-1] == ("2", "0")  # failed: last
    assert "failed: model.hidden_size must be a positive integer, got 0" in table[-1][-1]
    ok = table[:2]
    assert {row[1] for row in ok} == {"8", "16"} and all(row[-1] == "ok" for row in ok)
    best = [float(row[2].split()[0]) for row in ok]
    assert best == sorted(best, reverse=True)  # sorted by the main metric (val/f1, max)
    for row in ok:  # the best epoch is the number in its checkpoint's name (both from 0)
        epoch = int(row[2].split()[1].strip("()"))
        assert (sweep / row[0] / "checkpoints" / f"epoch_{epoch:03d}.ckpt").is_file(), row
    for row in ok:  # the parameter count is the model's
        module, _ = load_module(sweep / row[0] / "checkpoints" / "last.ckpt")
        assert row[-3] == f"{sum(p.numel() for p in module.parameters()):,}"
        assert row[-2].endswith(" s")
    assert_png(sweep / "slot_filling_f1_val.png")
    assert_png(sweep / "slot_filling_f1_test.png")


@requires_data
def test_report_on_a_folder_of_single_runs(sweep: Path, tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    for job, name in (("0", "2026-01-01_10-00-00_1"), ("1", "2026-01-01_11-00-00_2")):
        (folder,) = [p for p in sweep.iterdir() if p.name.split("_")[0] == job]
        shutil.copytree(folder, runs / name)
    for ckpt in (runs / "2026-01-01_11-00-00_2" / "checkpoints").glob("*.ckpt"):
        ckpt.write_bytes(b"not a checkpoint")  # unreadable: no parameter count, still a row
    path = report(runs)
    table = rows(path.read_text())
    params = {row[0]: row[-3] for row in table}
    assert params["2026-01-01_11-00-00_2"] == "—" and params["2026-01-01_10-00-00_1"] != "—"
    assert all(row[-1] == "ok" for row in table)
    assert (runs / "slot_filling_f1_val.png").is_file()


def test_a_folder_without_runs_is_refused(tmp_path: Path, capsys) -> None:
    with pytest.raises(ReportError, match="holds no training runs"):
        report(tmp_path)
    with pytest.raises(SystemExit) as exit_info:
        main([str(tmp_path / "missing")])
    assert exit_info.value.code == 1 and "is not a folder" in capsys.readouterr().err


@requires_data
def test_a_one_epoch_chart_has_whole_epoch_ticks(sweep: Path) -> None:
    jobs = [job for job in find_jobs(sweep) if job.curve]
    assert [job.curve[0][0] for job in jobs] == [0, 0]  # one epoch each: epoch 0
    ax = curves_figure(jobs, ["model.hidden_size"]).axes[0]
    low, high = ax.get_xlim()
    assert [float(t) for t in ax.get_xticks() if low <= t <= high] == [0.0]


@requires_data
def test_test_step_writes_per_type_scores_and_report_tabulates_them(sweep: Path) -> None:
    """Each job's test step wrote test_span_report.{txt,json} and per-type scalars to
    TensorBoard; ``--per-type`` tabulates each job's per-type F1 with a mean ± sd row."""
    jobs = sorted(p for p in sweep.iterdir() if (p / "test_span_report.json").is_file())
    assert len(jobs) == 2  # the failed job tested nothing
    saved = json.loads((jobs[0] / "test_span_report.json").read_text())
    assert saved["per_type"] and set(saved["errors"]["by_kind"]) >= {"missed", "spurious"}
    assert "micro avg" in (jobs[0] / "test_span_report.txt").read_text()
    tags = scalar_tags(jobs[0] / "tensorboard")
    for kind, row in saved["per_type"].items():
        assert tags[f"test/f1_per_type/{kind}"][-1] == pytest.approx(row["f1"], abs=1e-4)
    main([str(sweep), "--per-type"])
    text = (sweep / "report.md").read_text()
    main_header = next(line for line in text.splitlines() if line.startswith("| job"))
    assert "test/f1" in main_header and "_per_type/" not in main_header  # their own table
    section = text.split("test F1 per type", 1)[1]
    header = next(line for line in section.splitlines() if line.startswith("| type"))
    columns = [c.strip() for c in header.strip("|").split(" | ")]
    assert columns[0] == "type" and columns[-1] == "mean ± sd (2 jobs)"
    assert len(columns) == 4  # a column per job (its number), not per type: SNIPS has 39 types
    table = rows(section)
    kinds = {
        k for j in jobs for k in json.loads((j / "test_span_report.json").read_text())["per_type"]
    }
    assert [row[0] for row in table] == [*sorted(kinds), "micro avg"]
    micro = [float(cell) for cell in table[-1][1:3]]
    assert table[-1][-1].startswith(f"{sum(micro) / 2:.2f} ± ")


def test_labels_and_names_round_floats_and_the_chart_fits_them(tmp_path, recwarn) -> None:
    """Optuna's floats (0.000587194737873281) as 4 significant digits, in the table, the
    chart's labels and run folders; the chart lays out without matplotlib's warning."""
    from seqmodels.commands.report import Job, label, plot_tests

    keys = ["task.module.optimizer.lr", "model.dropout", "model.hidden_size"]
    jobs = []
    for n, (lr, drop) in enumerate([("0.000587194737873281", "0.303281247"), ("0.01", "0.1")]):
        overrides = dict(zip(keys, [lr, drop, "256"]))
        job = Job(tmp_path / str(n), f"{n}_atis-bilstm", "slot_filling", "val/f1", "max", overrides)
        job.test = {"test/f1": 0.9}
        jobs.append(job)
    assert label(jobs[0], keys) == "0: lr=0.0005872 dropout=0.3033 hidden_size=256"
    plot_tests(jobs, keys, tmp_path / "bars.png")
    assert not [w for w in recwarn if "constrained_layout" in str(w.message)]
    assert_png(tmp_path / "bars.png")
