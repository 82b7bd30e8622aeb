"""Compose the real Hydra config, shrunk to tiny sizes, for in-process training tests."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_dir
from omegaconf import DictConfig, open_dict

from seqmodels.commands.train import CONFIG_DIR

# Under pytest-xdist (`make test` runs one worker per core) every worker and the processes
# its tests start use one thread: threads waiting for a core another worker holds spin.
if os.environ.get("PYTEST_XDIST_WORKER"):
    os.environ["OMP_NUM_THREADS"] = "1"
    torch.set_num_threads(1)

REPO = Path(__file__).resolve().parents[1]
DATA_DIR = Path(os.environ.get("SEQMODELS_DATA_DIR", REPO.parent / "shared" / "data"))


def has_data(name: str) -> bool:
    marker = {"tinyshakespeare": "input.txt"}.get(name, "train/seq.in")
    return (DATA_DIR / name / marker).is_file()


DATASETS = ("atis", "snips", "tinyshakespeare")


def pytest_configure(config: pytest.Config) -> None:
    """Under CI (``SEQMODELS_REQUIRE_DATA=1``, set by .ci/run) a missing dataset fails the run
    at once instead of silently skipping every test that reads it."""
    missing = [n for n in DATASETS if not has_data(n)]
    if os.environ.get("SEQMODELS_REQUIRE_DATA") == "1" and missing:
        raise pytest.UsageError(
            f"SEQMODELS_REQUIRE_DATA=1 but {', '.join(missing)} not found in {DATA_DIR} "
            "(SEQMODELS_DATA_DIR); the tests that read them would all be skipped"
        )


requires_data = pytest.mark.skipif(
    not all(has_data(n) for n in DATASETS),
    reason=f"datasets not found in {DATA_DIR} (set SEQMODELS_DATA_DIR)",
)

TINY = [
    "model.embedding_dim=16",
    "model.hidden_size=16",
    "trainer.max_epochs=1",
    "trainer.accelerator=cpu",
    "trainer.limit_train_batches=4",
    "trainer.limit_val_batches=2",
    "trainer.limit_test_batches=2",
    "+trainer.enable_progress_bar=false",
    "callbacks.progress_bar=null",
    "callbacks.grad_norm.every_n_steps=1",
    "trainer.log_every_n_steps=1",
]


def make_cfg(output_dir: Path, *overrides: str, tiny: bool = True) -> DictConfig:
    """The composed ``train`` config with test overrides, writing into ``output_dir``."""
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        cfg = compose(
            config_name="train",
            overrides=[
                *(TINY if tiny else []),
                f"paths.data_dir={DATA_DIR}",
                f"paths.output_dir={output_dir}",
                *overrides,
            ],
        )
    if "download" in cfg.data:  # generated data (data=adding, copy) downloads nothing
        with open_dict(cfg):
            cfg.data.download = False
    return cfg


@pytest.fixture
def cfg_factory(tmp_path: Path):
    def factory(*overrides: str, tiny: bool = True) -> DictConfig:
        return make_cfg(tmp_path, *overrides, tiny=tiny)

    return factory


@contextmanager
def single_thread() -> Iterator[None]:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


@pytest.fixture
def one_thread():
    """Tiny models run far faster on one thread (and do not stall on a busy 2-core machine)."""
    with single_thread():
        yield


@pytest.fixture(scope="module")
def one_thread_per_module():
    """``one_thread`` for a whole module of tiny-tensor tests (``usefixtures`` in the module)."""
    with single_thread():
        yield


def run_train_cli(*args: str, cwd: Path, timeout: float = 300) -> subprocess.CompletedProcess:
    """``python scripts/train.py ARGS`` in ``cwd`` as a user runs it, reading the test datasets."""
    return run_script("train.py", *args, cwd=cwd, timeout=timeout)


def run_eval_cli(*args: str, cwd: Path, timeout: float = 300) -> subprocess.CompletedProcess:
    """``python scripts/eval.py ARGS`` in ``cwd`` as a user runs it."""
    return run_script("eval.py", *args, cwd=cwd, timeout=timeout)


def run_script(script: str, *args: str, cwd: Path, timeout: float) -> subprocess.CompletedProcess:
    """``python scripts/<script> ARGS`` in ``cwd``, reading the test datasets, output captured."""
    env = {**os.environ, "SEQMODELS_DATA_DIR": str(DATA_DIR), "HYDRA_FULL_ERROR": "0"}
    return subprocess.run(
        [sys.executable, str(REPO / "scripts" / script), *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
