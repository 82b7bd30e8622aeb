"""A normal (non-editable) install: build the wheel, install it in a fresh venv, and run the
console scripts from a folder outside the checkout (the configs must ship inside the package)."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import sysconfig
import time
import urllib.request
import venv
import zipfile
from pathlib import Path

import pytest
from conftest import DATA_DIR, REPO, TINY, requires_data


def run(*cmd: str | Path, cwd: Path, stdin: str | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "SEQMODELS_DATA_DIR": str(DATA_DIR), "PYTHONPATH": ""}
    result = subprocess.run(
        [str(c) for c in cmd],
        cwd=cwd,
        env=env,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, f"{cmd}\n{result.stdout[-2000:]}\n{result.stderr[-3000:]}"
    return result


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    """The project's wheel, built as ``pip install .`` builds it."""
    root = tmp_path_factory.mktemp("wheel")
    # Built from a copy: setuptools writes build/ beside the sources.
    source = root / "source"
    skip = shutil.ignore_patterns(".*", "build", "dist", "outputs", "*.egg-info", "__pycache__")
    shutil.copytree(REPO, source, ignore=skip)
    pip_wheel = ("-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-w", root / "dist")
    run(sys.executable, *pip_wheel, source, cwd=root)
    (built,) = (root / "dist").glob("seqmodels-*.whl")
    return built


@pytest.fixture(scope="module")
def installed(wheel: Path) -> Path:
    """A fresh venv holding the wheel only; its dependencies come from this interpreter's
    site-packages through a path file (the editable install there is not seen: path files
    inside an added folder are not processed)."""
    root = wheel.parents[1]
    env_dir = root / "venv"
    venv.create(env_dir, with_pip=False)
    python = env_dir / "bin" / "python"
    site = run(
        python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])", cwd=root
    ).stdout.strip()
    (Path(site) / "deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    run(sys.executable, "-m", "pip", "--python", python, "install", "--no-deps", wheel, cwd=root)
    return env_dir / "bin"


def test_the_wheel_holds_every_config_and_module(wheel: Path) -> None:
    """conf/ at the top of the checkout ships as seqmodels/conf; no YAML or module is left out
    (a package missing from pyproject.toml's list would be)."""
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
    configs = {
        f"seqmodels/conf/{p.relative_to(REPO / 'conf')}" for p in (REPO / "conf").rglob("*.yaml")
    }
    modules = {str(p.relative_to(REPO)) for p in (REPO / "seqmodels").rglob("*.py")}
    assert len(configs) > 50 and "seqmodels/conf/train.yaml" in configs
    assert configs - names == set()
    assert modules - names == set()


@requires_data
def test_installed_wheel_trains_evaluates_and_tags_outside_the_checkout(
    installed: Path, tmp_path: Path
) -> None:
    where = run(
        installed / "python", "-c", "import seqmodels; print(seqmodels.__file__)", cwd=tmp_path
    ).stdout
    assert str(REPO) not in where, where  # the wheel's copy, not this checkout
    run(installed / "seqmodels-train", *TINY, "num_threads=1", "hydra.run.dir=run", cwd=tmp_path)
    ckpt = tmp_path / "run" / "checkpoints" / "last.ckpt"
    assert ckpt.is_file()
    run(installed / "seqmodels-eval", f"ckpt_path={ckpt}", "hydra.run.dir=eval", cwd=tmp_path)
    metrics = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    assert "test/f1" in metrics["metrics"]
    tagged = run(
        installed / "seqmodels-tag",
        f"ckpt_path={ckpt}",
        cwd=tmp_path,
        stdin="show me flights from boston to denver\n",
    ).stdout
    tag_result = json.loads(tagged.strip().splitlines()[-1])
    assert "intent" in tag_result
    assert serve_installed(installed, ckpt, tmp_path, tag_result["text"]) == tag_result


def serve_installed(installed: Path, ckpt: Path, cwd: Path, text: str) -> dict:
    """``seqmodels-serve`` from the wheel on a free port: its ``/model/parse`` answer to
    ``text`` (which must equal ``seqmodels-tag``'s)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "PYTHONPATH": "", "OMP_NUM_THREADS": "1"}
    command = [installed / "seqmodels-serve", f"ckpt_path={ckpt}", f"port={port}"]
    process = subprocess.Popen(command, cwd=cwd, env=env, stderr=subprocess.PIPE, text=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                with urllib.request.urlopen(f"{url}/health", timeout=5) as answer:
                    if answer.status == 200:
                        break
            except OSError:
                assert process.poll() is None, process.stderr.read()[-2000:]
                assert time.monotonic() < deadline, "seqmodels-serve did not start in 120 s"
                time.sleep(0.5)
        body = json.dumps({"text": text}).encode()
        req = urllib.request.Request(f"{url}/model/parse", data=body, method="POST")
        req.add_header("Content-Type", "application/json")
        with urllib.request.urlopen(req, timeout=60) as answer:
            return json.loads(answer.read())
    finally:
        process.terminate()
        process.wait(timeout=30)
