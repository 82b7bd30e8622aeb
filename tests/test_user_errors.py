"""Every wrong input to every entry point: one line on stderr naming the option, exit status 1.

Each case runs its script as a user would, in a subprocess; the cases run two at a time (a
process spends most of its few seconds importing torch and Lightning). The checkpoints they
need come from one tiny training run per task.
"""

from __future__ import annotations

import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from conftest import REPO, make_cfg, requires_data, run_script, single_thread

from seqmodels.commands.train import train

pytestmark = requires_data

# (script, arguments, text the line must hold: the option, file or value it is about).
# {lm} and {sf} are a char-LM and a slot-filling checkpoint, {junk} a file of other bytes named
# .ckpt, {tmp} an empty folder.
CASES: list[tuple[str, list[str], str]] = [
    # train.py: Hydra's own errors (composing the config) and the run's checks
    ("train.py", ["model=foo"], "Available options in 'model': bilstm, bimingru"),
    ("train.py", ["trainer.foo=1"], "trainer.foo=1: trainer has no option 'foo'"),
    ("train.py", ["foo=1"], "foo=1: the config has no option 'foo'"),
    ("train.py", ["model=[foo"], "cannot parse the override 'model=[foo'"),
    ("train.py", ["trainer.max_epochs=abc"], "trainer.max_epochs"),
    ("train.py", ["ckpt_path={tmp}/missing.ckpt"], "{tmp}/missing.ckpt"),
    ("train.py", ["ckpt_path=last"], "add hydra.run.dir=<the run to continue>"),
    # eval.py
    ("eval.py", [], "ckpt_path is required"),
    ("eval.py", ["ckpt_path={tmp}/missing.ckpt"], "ckpt_path={tmp}/missing.ckpt does not exist"),
    ("eval.py", ["ckpt_path={sf}", "split=train"], "split must be one of test, val"),
    ("eval.py", ["ckpt_path={junk}"], "{junk} is not a readable checkpoint"),
    # generate.py
    ("generate.py", [], "ckpt_path is required"),
    ("generate.py", ["ckpt_path={lm}", "temperature=abc"], "temperature must be a number >= 0"),
    ("generate.py", ["ckpt_path={lm}", "length=0"], "length must be a whole number >= 1"),
    ("generate.py", ["ckpt_path={lm}", "length=abc"], "length must be a whole number"),
    ("generate.py", ["ckpt_path={lm}", "num_samples=-1"], "num_samples must be a whole number"),
    ("generate.py", ["ckpt_path={lm}", "top_k=0"], "top_k must be a whole number >= 1"),
    ("generate.py", ["ckpt_path={lm}", "top_p=2"], "top_p must be a number in (0, 1]"),
    ("generate.py", ["ckpt_path={sf}"], "is a task=slot_filling checkpoint"),
    ("generate.py", ["ckpt_path={lm}", "foo=1"], "foo=1: the config has no option 'foo'"),
    ("generate.py", ["ckpt_path={lm}", "temperature=1e-300"], "0 (greedy) or at least 1e-06"),
    ("generate.py", ["ckpt_path={lm}", "seed=18446744073709551616"], "seed must be a whole"),
    ("generate.py", ["ckpt_path={lm}", "device=gpu"], "device must be a torch device"),
    ("generate.py", ["ckpt_path={lm}", "device=cuda:99"], "device=cuda:99: "),
    ("generate.py", ["ckpt_path={lm}", "num_threads=-3"], "num_threads must be a whole number"),
    # serve.py (its options are checked before fastapi or uvicorn is imported)
    ("serve.py", ["ckpt_path={lm}", "device=gpu"], "device must be a torch device"),
    ("serve.py", ["ckpt_path={lm}", "device=cuda:99"], "device=cuda:99: "),
    ("serve.py", ["ckpt_path={lm}", "num_threads=-3"], "num_threads must be a whole number >= 1"),
    ("serve.py", ["ckpt_path={lm}", "port=-1"], "port must be a whole number in [0, 65535]"),
    ("serve.py", ["ckpt_path={lm}", "max_length=0"], "max_length must be a whole number in [1,"),
    # tag.py
    ("tag.py", ["text=hello"], "ckpt_path is required"),
    ("tag.py", ["ckpt_path={lm}", "text=hello"], "is a task=char_lm checkpoint"),
    ("tag.py", ["ckpt_path={tmp}", "text=hello"], "ckpt_path={tmp} is a folder"),
    ("tag.py", ["ckpt_path={sf}", "text=hello", "device=gpu"], "device must be a torch device"),
    ("tag.py", ["ckpt_path={sf}", "text=hello", "num_threads=0"], "num_threads must be a whole"),
    # report.py (argparse, no Hydra)
    ("report.py", ["{tmp}"], "{tmp} holds no training runs"),
    ("report.py", ["{lm}"], "last.ckpt is not a folder"),
    ("report.py", [], "the following arguments are required: folder"),
]


@pytest.fixture(scope="module")
def places(tmp_path_factory) -> dict[str, str]:
    """The checkpoints and the empty folder the cases name."""
    root = tmp_path_factory.mktemp("user_errors")
    with single_thread():
        train(
            make_cfg(root / "lm", "task=char_lm", "model=gru", "data.block_size=16", "test=false")
        )
        train(make_cfg(root / "sf", "test=false"))
    (root / "empty").mkdir()
    (root / "junk.ckpt").write_bytes(b"not a checkpoint")
    return {
        "lm": str(root / "lm" / "checkpoints" / "last.ckpt"),
        "sf": str(root / "sf" / "checkpoints" / "last.ckpt"),
        "junk": str(root / "junk.ckpt"),
        "tmp": str(root / "empty"),
    }


def filled(text: str, places: dict[str, str]) -> str:
    return text.format(**places)


def full_error_run(cwd: Path) -> subprocess.CompletedProcess:
    """A case with ``HYDRA_FULL_ERROR=1``: the traceback for those who want it."""
    return subprocess.run(
        [sys.executable, str(REPO / "scripts" / "generate.py"), "top_k=0"],
        cwd=cwd,
        env={**os.environ, "HYDRA_FULL_ERROR": "1"},
        capture_output=True,
        text=True,
        timeout=300,
    )


@pytest.fixture(scope="module")
def results(places, tmp_path_factory) -> list[subprocess.CompletedProcess]:
    """Every case's finished process in the order of CASES, then the full-error run."""
    cwd = tmp_path_factory.mktemp("cwd")

    def run(index: int) -> subprocess.CompletedProcess:
        if index == len(CASES):
            return full_error_run(cwd)
        script, args, _ = CASES[index]
        return run_script(script, *(filled(a, places) for a in args), cwd=cwd, timeout=300)

    with ThreadPoolExecutor(max_workers=2) as pool:  # two cores
        return list(pool.map(run, range(len(CASES) + 1)))


def case_id(index: int) -> str:
    script, args, _ = CASES[index]
    return " ".join([script, *args])


@pytest.mark.parametrize("index", range(len(CASES)), ids=case_id)
def test_one_line_naming_the_option_and_exit_1(index: int, results, places) -> None:
    expected = filled(CASES[index][2], places)
    result = results[index]
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.returncode == 1, result.stderr[-3000:]
    assert "Traceback" not in result.stderr
    assert len(lines) == 1, result.stderr[-3000:]
    assert lines[0].startswith("error: ") and expected in lines[0], lines[0]


def test_hydra_full_error_still_shows_the_traceback(results) -> None:
    result = results[len(CASES)]
    assert result.returncode == 1
    assert "Traceback" in result.stderr
    assert "ConfigError: top_k must be a whole number >= 1" in result.stderr
