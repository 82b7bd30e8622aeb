"""ckpt_path=last without hydra.run.dir: refused in one line that names hydra.run.dir."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import make_cfg

from seqmodels.commands.train import train
from seqmodels.core.errors import ConfigError

RUNS = "outputs/slot_filling/runs"


def run_folder(root: Path, when: str, what: str, last: bool) -> Path:
    folder = root / RUNS / f"2025-06-0{when}_12-00-00_123456_{what}_4242"
    (folder / "checkpoints").mkdir(parents=True)
    if last:
        (folder / "checkpoints" / "last.ckpt").write_bytes(b"")
    return folder


def test_last_in_a_new_run_folder_is_refused_naming_the_latest_run(tmp_path: Path) -> None:
    run_folder(tmp_path, "1", "atis-bilstm", last=True)
    latest = run_folder(tmp_path, "2", "atis-bilstm", last=True)
    run_folder(tmp_path, "3", "atis-bilstm", last=False)  # a run that stopped before saving
    run_folder(tmp_path, "4", "snips-bilstm", last=True)  # another run
    new = tmp_path / RUNS / "2025-06-05_12-00-00_123456_atis-bilstm_4343"
    cfg = make_cfg(new, "ckpt_path=last")
    with pytest.raises(ConfigError) as err:
        train(cfg)
    message = str(err.value)
    assert "\n" not in message
    assert "hydra.run.dir=<the run to continue>" in message
    assert f"hydra.run.dir={latest}" in message
    assert not (new / "checkpoints").exists()  # refused before anything was trained


def test_last_with_no_run_like_this_one_names_only_the_option(tmp_path: Path) -> None:
    cfg = make_cfg(tmp_path / "elsewhere", "ckpt_path=last")
    with pytest.raises(ConfigError, match=r"add hydra.run.dir=<the run to continue>$"):
        train(cfg)
