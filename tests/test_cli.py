"""The real command line: `python scripts/train.py -m model=rnn,lstm,gru` in a subprocess."""

from __future__ import annotations

from pathlib import Path

from conftest import TINY, requires_data, run_train_cli
from tb_events import scalar_tags


@requires_data
def test_multirun_leaves_one_dir_and_tensorboard_run_per_job(tmp_path: Path) -> None:
    result = run_train_cli("-m", "model=rnn,lstm,gru", *TINY, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    (sweep,) = (tmp_path / "outputs" / "slot_filling" / "multiruns").iterdir()
    jobs = sorted(p for p in sweep.iterdir() if p.is_dir())
    assert [p.name for p in jobs] == ["0", "1", "2"]
    for job, model in zip(jobs, ["rnn", "lstm", "gru"]):
        assert f"model={model}" in (job / ".hydra" / "overrides.yaml").read_text()
        assert "test/f1" in scalar_tags(job / "tensorboard")
        assert (job / "checkpoints" / "last.ckpt").is_file()


def test_unknown_model_is_a_short_error_listing_options(tmp_path: Path) -> None:
    result = run_train_cli("model=foo", cwd=tmp_path)
    assert result.returncode != 0
    assert "Could not find 'model/foo'" in result.stderr
    assert "bilstm" in result.stderr and "gru" in result.stderr  # the available options
    assert "Traceback" not in result.stderr
