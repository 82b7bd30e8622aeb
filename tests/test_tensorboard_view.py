"""What `tensorboard --logdir outputs` shows, read over TensorBoard's own HTTP API.

A 3-epoch slot-filling run (in-process) and a 2-epoch char-LM run (the real command line) share
one logdir, as under ``outputs/``; TensorBoard is started on it with its default loader.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import TINY, make_cfg, requires_data, run_train_cli
from hydra.core.override_parser.overrides_parser import OverridesParser

from seqmodels.commands.train import train
from seqmodels.plumbing.tensorboard_view import run_hparams, run_name

EVERY = 3  # grad_norm every 3 steps; 4 train batches a run's epoch


class TensorBoard:
    """A ``tensorboard`` server on 127.0.0.1 and the JSON its frontend reads."""

    def __init__(self, logdir: Path) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "tensorboard.main", "--logdir", str(logdir)]
            + ["--host", "127.0.0.1", "--port", "0"],
            stderr=subprocess.PIPE,
            text=True,
        )
        for line in self.process.stderr:  # "TensorBoard 2.x at http://127.0.0.1:PORT/ ..."
            if match := re.search(r"http://127\.0\.0\.1:\d+/", line):
                self.url = match.group(0)
                break
        else:
            raise RuntimeError("tensorboard exited before serving")

    def get(self, path: str, body: dict | None = None, **query: str) -> Any:
        url = self.url + path + ("?" + urllib.parse.urlencode(query) if query else "")
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(url, data=data, headers={"Content-Type": "text/json"})
        with urllib.request.urlopen(request, timeout=30) as response:
            return json.loads(response.read())

    def points(self, run: str, tag: str) -> list[tuple[int, float]]:
        """``(step, value)`` of a scalar chart, as the Scalars dashboard draws it."""
        return [(s, v) for _, s, v in self.get("data/plugin/scalars/scalars", run=run, tag=tag)]

    def experiment(self) -> dict:
        return self.get("data/plugin/hparams/experiment", {"experimentName": ""})

    def session_groups(self) -> list[dict]:
        body = {
            "experimentName": "",
            "allowedStatuses": ["STATUS_UNKNOWN", "STATUS_SUCCESS", "STATUS_RUNNING"],
            "colParams": [],
            "startIndex": 0,
            "sliceSize": 100,
        }
        return self.get("data/plugin/hparams/session_groups", body)["sessionGroups"]

    def wait_loaded(self, last_tags: dict[str, str], timeout: float = 60) -> None:
        """Until each run shows its last-written tag and a second look finds nothing new (the
        loader reads the event files in the background)."""
        deadline, seen = time.monotonic() + timeout, None
        while True:
            now = (self.get("data/plugin/scalars/tags"), self.experiment())
            tags = now[0]
            if now == seen and all(tag in tags.get(run, {}) for run, tag in last_tags.items()):
                return
            assert time.monotonic() < deadline, f"tensorboard did not load {last_tags}: {tags}"
            seen = now
            time.sleep(1)

    def close(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=30)


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    root = tmp_path_factory.mktemp("tb")
    overrides = ["model=lstm", "trainer.max_epochs=3", f"callbacks.grad_norm.every_n_steps={EVERY}"]
    slot_dir = root / "outputs" / "slot_filling" / "runs" / f"{run_name('atis', 'lstm')}_1"
    slot_metrics = train(make_cfg(slot_dir, *overrides))
    result = run_train_cli(
        *TINY,
        "task=char_lm",
        "data=tinyshakespeare",
        "model=lstm",
        "trainer.max_epochs=2",
        f"callbacks.grad_norm.every_n_steps={EVERY}",
        cwd=root,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    (lm_dir,) = (root / "outputs" / "char_lm" / "runs").iterdir()
    return {
        "logdir": root / "outputs",
        "slot": f"slot_filling/runs/{slot_dir.name}/tensorboard",
        "slot_metrics": slot_metrics,
        "lm": f"char_lm/runs/{lm_dir.name}/tensorboard",
    }


@pytest.fixture(scope="module")
def board(runs: dict[str, Any]) -> Iterator[TensorBoard]:
    server = TensorBoard(runs["logdir"])
    try:
        server.wait_loaded({runs["slot"]: "test/f1", runs["lm"]: "test/bpc"})
        yield server
    finally:
        server.close()


@requires_data
def test_val_curves_and_test_values_show_in_scalars(board: TensorBoard, runs) -> None:
    val_f1 = board.points(runs["slot"], "val/f1")
    steps = [s for s, _ in val_f1]
    assert len(val_f1) == 3 and steps == sorted(set(steps)) and steps[0] > 0, val_f1
    ((test_step, test_f1),) = board.points(runs["slot"], "test/f1")
    assert test_step >= steps[-1]
    assert test_f1 == pytest.approx(runs["slot_metrics"]["test/f1"], rel=1e-5)
    val_bpc = board.points(runs["lm"], "val/bpc")
    assert len(val_bpc) == 2 and val_bpc[0][0] < val_bpc[1][0], val_bpc
    assert len(board.points(runs["lm"], "test/bpc")) == 1


@requires_data
def test_grad_norms_only_at_the_steps_they_were_measured(board: TensorBoard, runs) -> None:
    for run, train_steps in ((runs["slot"], 3 * 4), (runs["lm"], 2 * 4)):
        steps = [s for s, _ in board.points(run, "grad_norm/total")]
        assert steps == list(range(0, train_steps, EVERY)), (run, steps)


@requires_data
def test_hparams_lists_both_tasks(board: TensorBoard, runs) -> None:
    experiment = board.experiment()
    metrics = {m["name"]["tag"] for m in experiment["metricInfos"]}
    for task_metrics in (("val/f1", "test/f1", "test/intent_acc"), ("val/bpc", "test/bpc")):
        assert {f"hparams/{m}" for m in task_metrics} <= metrics, metrics
    assert all(m.startswith("hparams/") for m in metrics), metrics  # no curves as columns
    hparams = {h["name"]: h for h in experiment["hparamInfos"]}
    for name in ("task", "data", "model.name", "model.hidden_size", "optimizer.lr", "seed"):
        assert name in hparams, sorted(hparams)
    assert "overrides" in hparams
    assert not any(name.startswith(("callbacks", "logger", "paths")) for name in hparams)
    assert hparams["task"]["differs"] and hparams["data"]["differs"]
    assert not hparams["model.name"].get("differs", False)  # both are lstm

    rows = {group["name"]: group for group in board.session_groups()}
    slot, lm = rows[runs["slot"] + "/hparams"], rows[runs["lm"] + "/hparams"]
    # The command line names the run folder after what the run is.
    assert "tinyshakespeare-lstm_" in runs["lm"] and "max_epochs-2" in runs["lm"]
    assert "max_epochs=1" not in runs["lm"]  # TINY's value, overridden
    lm_overrides = lm["hparams"]["overrides"].split()
    assert {"task=char_lm", "model=lstm", "trainer.max_epochs=2"} <= set(lm_overrides)
    assert not any(o.startswith(("callbacks.", "trainer.limit")) for o in lm_overrides)
    assert (slot["hparams"]["task"], lm["hparams"]["task"]) == ("slot_filling", "char_lm")
    slot_values = {m["name"]["tag"]: m["value"] for m in slot["metricValues"]}
    assert slot_values["hparams/test/f1"] == pytest.approx(runs["slot_metrics"]["test/f1"])
    assert "hparams/val/bpc" in {m["name"]["tag"] for m in lm["metricValues"]}


@requires_data
def test_custom_scalars_start_with_train_vs_val(board: TensorBoard) -> None:
    categories = board.get("data/plugin/custom_scalars/layout")["category"]
    first = categories[0]
    assert not first.get("closed") and all(c.get("closed") for c in categories[1:])
    charts = {chart["title"]: chart["multiline"]["tag"] for chart in first["chart"]}
    assert charts["loss: train vs val"] == ["^train/loss$", "^val/loss$"]
    assert ["^val/f1$", "^test/f1$"] in charts.values()
    assert ["^val/bpc$", "^test/bpc$"] in charts.values()


def test_run_names_say_what_the_run_is() -> None:
    overrides = [
        "model=gru",
        "task.module.optimizer.lr=0.01",
        "paths.data_dir=/data",
        "callbacks.grad_norm.every_n_steps=5",
        "+trainer.enable_progress_bar=false",
        "model.hidden_size=[64,128]",
    ]
    name = run_name("snips", "gru", overrides)
    assert name == "snips-gru_lr-0.01+hidden_size-64-128"
    # a checkpoint path through that folder parses as a Hydra override, unquoted
    parsed = OverridesParser.create().parse_overrides([f"ckpt_path=runs/1_{name}_7/last.ckpt"])
    assert parsed[0].value() == f"runs/1_{name}_7/last.ckpt"
    assert run_name("atis", "bilstm") == "atis-bilstm"
    # Optuna's floats: 4 significant digits (was lr-0.000587194737873281)
    optuna = ["task.module.optimizer.lr=0.000587194737873281", "model.hidden_size=256"]
    assert run_name("atis", "bilstm", optuna) == "atis-bilstm_lr-0.0005872+hidden_size-256"
    assert (
        run_name("atis", "bilstm", ["model.dropout=0.30328124701"]) == "atis-bilstm_dropout-0.3033"
    )
    long = run_name("atis", "lstm", [f"model.k{i}=1234567" for i in range(20)])
    assert len(long) < 110 and long.endswith("+...") and "/" not in long


def test_hparams_are_plain_values_without_callbacks() -> None:
    cfg = make_cfg(Path(os.devnull), "task=char_lm", "data=tinyshakespeare")
    from seqmodels.commands.train import plain

    hparams = run_hparams(plain(cfg), ["model.hidden_size=16", "paths.output_dir=/x"])
    assert hparams["optimizer"] == "AdamW" and hparams["scheduler"] == "none"
    assert hparams["overrides"] == "model.hidden_size=16"
    assert all(isinstance(v, bool | int | float | str) for v in hparams.values())
    assert not any(k.startswith(("callbacks", "logger", "paths", "hydra")) for k in hparams)
