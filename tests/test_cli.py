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
    # <job number>_<data>-<model>_<overrides>: TensorBoard names the job's run by this folder
    names = [p.name.split("_")[:2] for p in jobs]
    assert names == [["0", "atis-rnn"], ["1", "atis-lstm"], ["2", "atis-gru"]]
    for job, model in zip(jobs, ["rnn", "lstm", "gru"]):
        assert f"model={model}" in (job / ".hydra" / "overrides.yaml").read_text()
        assert "test/f1" in scalar_tags(job / "tensorboard")
        assert (job / "checkpoints" / "last.ckpt").is_file()


def test_unknown_model_is_a_short_error_listing_options(tmp_path: Path) -> None:
    result = run_train_cli("model=foo", cwd=tmp_path)
    assert result.returncode == 1
    (line,) = [line for line in result.stderr.splitlines() if line.strip()]  # one line
    assert line.startswith("error: ") and "Could not find 'model/foo'" in line
    assert "Available options in 'model': bilstm, bimingru" in line  # the available options
