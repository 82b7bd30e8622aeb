"""Sample outputs the docs show, held to what real short runs print: the terminal's last lines
(README) and report.py's table for a char-LM sweep (docs/using-a-model.md)."""

from __future__ import annotations

import re
from pathlib import Path

from conftest import REPO, TINY, requires_data, run_script, run_train_cli

TINY_CLI = [o for o in TINY if not o.startswith("model.hidden_size")]
README = (REPO / "README.md").read_text(encoding="utf-8")
USING = (REPO / "docs" / "using-a-model.md").read_text(encoding="utf-8")


def table_after(markdown: str, marker: str) -> list[list[str]]:
    """The cells of the first markdown table after ``marker`` (header row first)."""
    lines = markdown[markdown.index(marker) :].splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("| "))
    rows = []
    for line in lines[start:]:
        if not line.startswith("|"):
            break
        if not set(line) <= set("|- "):
            rows.append([cell.strip() for cell in line.strip().strip("|").split(" | ")])
    return rows


@requires_data
def test_the_terminal_ends_as_the_readme_says(tmp_path: Path) -> None:
    """README: the run ends with ``best checkpoint: <path>`` and ``test metrics:
    test/loss=...  test/f1=...``, in that order, the last lines of the log (stderr)."""
    for sample in ("best checkpoint: <path>", "test metrics: test/loss=...  test/f1=..."):
        assert f"`{sample}`" in README
    result = run_train_cli(*TINY_CLI, "model.hidden_size=8", "hydra.run.dir=run", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    (stream,) = [out for out in (result.stdout, result.stderr) if "best checkpoint: " in out]
    lines = [line for line in stream.splitlines() if line.strip()]  # the log's own order
    best, metrics = lines[-2], lines[-1]
    assert re.search(r"best checkpoint: \S+\.ckpt$", best), lines[-4:]
    assert re.search(r"test metrics: test/loss=[\d.]+  .*test/f1=[\d.]+", metrics), lines[-4:]


@requires_data
def test_the_sweep_report_in_the_docs_has_the_columns_report_py_writes(tmp_path: Path) -> None:
    """docs/using-a-model.md's report of a char-LM sweep over model=: the same header as
    report.py writes for such a sweep today, every row as wide, the job column as named."""
    documented = table_after(USING, "python scripts/report.py outputs/char_lm/multiruns/readme_")
    sweep = tmp_path / "sweep"
    result = run_train_cli(
        "-m",
        "task=char_lm",
        "model=rnn,gru",
        *TINY_CLI,
        "model.hidden_size=8",
        "data.block_size=16",
        "data.eval_streams=2",
        f"hydra.sweep.dir={sweep}",
        cwd=tmp_path,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert run_script("report.py", str(sweep), cwd=tmp_path, timeout=120).returncode == 0
    written = table_after((sweep / "report.md").read_text(encoding="utf-8"), "| job |")
    assert documented[0] == written[0]
    assert all(len(row) == len(written[0]) for row in documented[1:])
    job = re.compile(r"^\d+_tinyshakespeare-(\w+)_max_epochs-2$")
    assert all(job.match(row[0]) and job.match(row[0])[1] == row[1] for row in documented[1:])
