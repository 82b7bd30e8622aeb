"""A corrupt or unrelated checkpoint for scripts/eval.py: a clear error; nothing overwritten."""

from __future__ import annotations

import hashlib
import random
from pathlib import Path

import pytest
import torch
from conftest import run_eval_cli

from seqmodels.core.checkpoints import read_checkpoint
from seqmodels.core.errors import CheckpointError, UserError


def write_foreign(kind: str, path: Path) -> Path:
    """A file that is not a checkpoint of ours, in one of several ways."""
    if kind.startswith("random bytes"):  # seed chosen for the error torch's unpickler raises
        path.write_bytes(random.Random(int(kind.split("seed ")[1].rstrip(")"))).randbytes(4096))
    elif kind == "empty":
        path.write_bytes(b"")
    elif kind == "text":
        path.write_text("model weights: see README\n")
    elif kind == "truncated":
        torch.save({"state_dict": {"w": torch.zeros(1000)}, "config": {}}, path)
        path.write_bytes(path.read_bytes()[:-700])
    elif kind == "a tensor":
        torch.save(torch.zeros(3), path)
    elif kind == "a list":
        torch.save([1, 2, 3], path)
    elif kind == "another program's checkpoint":
        torch.save({"epoch": 3, "state_dict": {"fc.weight": torch.zeros(2, 2)}}, path)
    elif kind == "a pickled object":  # refused by weights_only=True, never executed
        import pickle

        path.write_bytes(pickle.dumps(Path("/")))
    return path


KINDS = [
    "random bytes (seed 0)",  # UnpicklingError
    "random bytes (seed 2)",  # IndexError
    "random bytes (seed 20)",  # KeyError (failed the CI run of stop 15 as os.urandom bytes)
    "random bytes (seed 195)",  # UnicodeDecodeError
    "empty",
    "text",
    "truncated",
    "a tensor",
    "a list",
    "another program's checkpoint",
    "a pickled object",
]


@pytest.mark.parametrize("kind", KINDS)
def test_foreign_files_are_refused_clearly(tmp_path: Path, kind: str) -> None:
    path = write_foreign(kind, tmp_path / "model.ckpt")
    before = path.read_bytes()
    with pytest.raises(CheckpointError) as err:
        read_checkpoint(path)
    assert str(path) in str(err.value)
    assert isinstance(err.value, UserError)
    assert path.read_bytes() == before


@pytest.mark.filterwarnings("ignore:Detected pickle protocol")
def test_any_random_bytes_are_a_checkpoint_error(tmp_path: Path) -> None:
    """Whatever torch's unpickler raises on foreign bytes, the user sees one CheckpointError."""
    path = tmp_path / "model.ckpt"
    for seed in range(300):
        path.write_bytes(random.Random(seed).randbytes(512))
        with pytest.raises(CheckpointError, match="is not a readable checkpoint"):
            read_checkpoint(path)


def test_a_folder_is_not_a_checkpoint(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match=f"checkpoint {tmp_path} does not exist"):
        read_checkpoint(tmp_path)


def test_cli_corrupt_checkpoint_is_a_short_error_and_overwrites_nothing(tmp_path: Path) -> None:
    ckpt = write_foreign("truncated", tmp_path / "model.ckpt")
    out = tmp_path / "eval"
    out.mkdir()
    (out / "metrics.json").write_text('{"earlier": "results"}\n')
    digest = hashlib.sha256(ckpt.read_bytes()).hexdigest()
    result = run_eval_cli(f"ckpt_path={ckpt}", f"hydra.run.dir={out}", cwd=tmp_path)
    assert result.returncode == 1, result.stderr[-3000:]
    assert f"{ckpt} is not a readable checkpoint" in result.stderr
    assert "Traceback" not in result.stderr + result.stdout
    assert (out / "metrics.json").read_text() == '{"earlier": "results"}\n'
    assert not (out / "predictions.conll").exists()
    assert hashlib.sha256(ckpt.read_bytes()).hexdigest() == digest
