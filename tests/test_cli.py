"""The real command line: `python scripts/train.py -m model=rnn,lstm,gru` in a subprocess."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from conftest import DATA_DIR, REPO, TINY, requires_data
from tb_events import scalar_tags


def run_cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "SEQMODELS_DATA_DIR": str(DATA_DIR), "HYDRA_FULL_ERROR": "0"}
    return subprocess.run(
        [sys.executable, str(REPO / "scripts" / "train.py"), *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )


@requires_data
def test_multirun_leaves_one_dir_and_tensorboard_run_per_job(tmp_path: Path) -> None:
    result = run_cli("-m", "model=rnn,lstm,gru", *TINY, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    (sweep,) = (tmp_path / "outputs" / "slot_filling" / "multiruns").iterdir()
    jobs = sorted(p for p in sweep.iterdir() if p.is_dir())
    assert [p.name for p in jobs] == ["0", "1", "2"]
    for job, model in zip(jobs, ["rnn", "lstm", "gru"]):
        assert f"model={model}" in (job / ".hydra" / "overrides.yaml").read_text()
        assert "test/f1" in scalar_tags(job / "tensorboard")
        assert (job / "checkpoints" / "last.ckpt").is_file()


def test_unknown_model_is_a_short_error_listing_options(tmp_path: Path) -> None:
    result = run_cli("model=foo", cwd=tmp_path)
    assert result.returncode != 0
    assert "Could not find 'model/foo'" in result.stderr
    assert "bilstm" in result.stderr and "gru" in result.stderr  # the available options
    assert "Traceback" not in result.stderr
