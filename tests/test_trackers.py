"""logger=mlflow and logger=wandb: the metrics and the resolved config TensorBoard gets, read back
through each tracker's own code (MLflow's client; W&B's record format and protobuf classes)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import TINY, requires_data, run_train_cli
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

TWO_EPOCHS = [o for o in TINY if not o.startswith("trainer.max_epochs=")] + ["trainer.max_epochs=2"]


def only_run_dir(tmp_path: Path, task: str) -> Path:
    (run_dir,) = (tmp_path / "outputs" / task / "runs").iterdir()
    return run_dir


@requires_data
def test_mlflow_beside_tensorboard_gets_each_val_epoch_and_the_config(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytest.importorskip("mlflow")
    from mlflow.tracking import MlflowClient

    proc = run_train_cli("logger=[tensorboard,mlflow]", *TWO_EPOCHS, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    run_dir = only_run_dir(tmp_path, "slot_filling")

    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")  # MLflow 3: file stores are opt-in
    client = MlflowClient(f"file:{tmp_path / 'outputs' / 'mlruns'}")
    experiment = client.get_experiment_by_name("seqmodels-slot_filling")
    (run,) = client.search_runs([experiment.experiment_id])
    assert run.info.status == "FINISHED"
    assert run.info.run_name == run_dir.name

    history = client.get_metric_history(run.info.run_id, "val/f1")
    events = EventAccumulator(str(run_dir / "tensorboard"))
    events.Reload()
    in_tensorboard = [(e.step, round(e.value, 4)) for e in events.Scalars("val/f1")]
    assert len(history) == 2  # one point per epoch
    assert [(m.step, round(m.value, 4)) for m in history] == in_tensorboard
    assert {"train/loss", "val/loss", "test/f1", "grad_norm/total"} <= set(run.data.metrics)

    params = run.data.params  # the resolved config, flattened
    assert params["model/name"] == "bilstm"
    assert params["model/hidden_size"] == "16"
    assert params["seed"] == "42"
    assert params["task/monitor"] == "val/f1"
    assert Path(params["paths/output_dir"]).resolve() == run_dir.resolve()


def wandb_records(path: Path) -> Iterator[object]:
    """The records of a W&B run file, parsed with W&B's own protobuf classes.

    W&B 0.31 ships no Python reader; the file is a LevelDB-style log: a 7-byte header, then
    32 KiB blocks of chunks (checksum, length, type: full/first/middle/last) of one record each.
    """
    pb = pytest.importorskip("wandb.proto.wandb_internal_pb2")
    data = path.read_bytes()
    assert data[:4] == b":W&B"
    pos, block, pending = 7, 32768, b""
    while pos + 7 <= len(data):
        if block - pos % block < 7:  # too little room for a chunk header: the block's padding
            pos += block - pos % block
            continue
        length, kind = int.from_bytes(data[pos + 4 : pos + 6], "little"), data[pos + 6]
        pending += data[pos + 7 : pos + 7 + length]
        pos += 7 + length
        if kind in (1, 4):  # a full record, or the last chunk of one
            record = pb.Record()
            record.ParseFromString(pending)
            pending = b""
            yield record


def key_of(item: object) -> str:
    """A W&B history or config item's name (names with "/" come as a nested key)."""
    return item.key or "/".join(item.nested_key)


@requires_data
def test_wandb_offline_run_holds_each_val_epoch_and_the_config(tmp_path: Path) -> None:
    pytest.importorskip("wandb")
    proc = run_train_cli("logger=wandb", "task=long_range", *TWO_EPOCHS, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "anonymous setting" not in proc.stdout + proc.stderr
    run_dir = only_run_dir(tmp_path, "long_range")
    (run_file,) = run_dir.glob("wandb/offline-run-*/run-*.wandb")

    records = list(wandb_records(run_file))
    (run,) = [r.run for r in records if r.WhichOneof("record_type") == "run"]
    assert (run.display_name, run.project) == (run_dir.name, "seqmodels-long_range")
    rows = [
        {key_of(item): json.loads(item.value_json) for item in r.history.item}
        for r in records
        if r.WhichOneof("record_type") == "history"
    ]
    assert [row["epoch"] for row in rows if "val/loss" in row] == [0, 1]
    assert any("test/loss" in row for row in rows)
    config = {
        key_of(update): json.loads(update.value_json)
        for r in records
        if r.WhichOneof("record_type") == "config"
        for update in r.config.update
    }
    assert config["model"]["hidden_size"] == 16
    assert config["task"]["monitor"] == "val/loss"
    assert config["seed"] == 42


@pytest.mark.parametrize("form", ["absolute", "relative"])
def test_mlflow_takes_a_plain_folder(tmp_path: Path, monkeypatch, form: str) -> None:
    """logger.mlflow.tracking_uri=/tmp/mlruns: MLflow 3 refuses a file store unless opted in
    (MLFLOW_ALLOW_FILE_STORE), which a plain folder needs as a file: URI does."""
    pytest.importorskip("mlflow")
    from mlflow.tracking import MlflowClient

    from seqmodels.plumbing.trackers import mlflow_logger

    monkeypatch.delenv("MLFLOW_ALLOW_FILE_STORE", raising=False)
    monkeypatch.chdir(tmp_path)
    folder = tmp_path / "mlruns"
    uri = str(folder) if form == "absolute" else "mlruns"
    logger = mlflow_logger(str(tmp_path / "run_1"), uri, "seqmodels-test")
    logger.log_metrics({"val/f1": 0.5}, step=0)
    logger.finalize("success")
    runs = MlflowClient(folder.as_uri()).search_runs([logger.experiment_id])
    assert [r.info.run_name for r in runs] == ["run_1"]
    assert runs[0].data.metrics["val/f1"] == 0.5


@pytest.mark.parametrize("uri", ["databricks", "databricks://my-profile", None])
def test_mlflow_keeps_uris_that_are_not_folders(tmp_path: Path, monkeypatch, uri) -> None:
    """Only a plain path is a folder: ``databricks`` (MLflow's scheme-less word for Databricks)
    and None (MLflow's own default, MLFLOW_TRACKING_URI) are never made ``file:<cwd>/...``."""
    pytest.importorskip("mlflow")
    from seqmodels.plumbing.trackers import mlflow_logger

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://tracking.invalid:5000")
    logger = mlflow_logger(str(tmp_path / "run_1"), uri, "seqmodels-test")
    assert logger._tracking_uri == (uri or "http://tracking.invalid:5000")
    assert not (tmp_path / "databricks").exists() and not (tmp_path / "None").exists()
