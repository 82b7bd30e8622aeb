"""What TensorBoard shows of a run beyond its curves: the HPARAMS row, a first-screen layout, the
run's folder name.

Each run's HPARAMS session lives in a sub-run, ``<run>/tensorboard/hparams``, beside the run's
curves in ``<run>/tensorboard``. Why a sub-run:

* TensorBoard's hparams plugin takes its metric columns from every scalar tag of a session's run
  and the runs below it. In the run itself that would be every curve (``gates/...``,
  ``grad_norm/...``); in the sub-run it is just the final metrics, ``hparams/val/*`` and
  ``hparams/test/*``.
* No experiment summary is written: when one exists, TensorBoard takes the first it finds as the
  whole experiment, so one task's metrics hid the others' under ``--logdir outputs``. Without one
  it unions the hyperparameters and metrics of all sessions and marks the hyperparameters whose
  values differ (its HPARAMS tab shows those first).
* The final metrics stay out of the curves' run: written at step 0 after training, they made
  TensorBoard's default loader drop every earlier point of those tags (a later event file that
  steps back reads as a restart).
"""

from __future__ import annotations

import re
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from tensorboard.compat.proto.summary_pb2 import Summary, SummaryMetadata
from tensorboard.compat.proto.tensor_pb2 import TensorProto
from tensorboard.plugins.custom_scalar import layout_pb2
from tensorboard.plugins.custom_scalar import metadata as custom_scalar_metadata
from tensorboard.plugins.hparams import api_pb2, plugin_data_pb2
from tensorboard.plugins.hparams import metadata as hparams_metadata
from torch.utils.tensorboard.summary import scalar
from torch.utils.tensorboard.writer import FileWriter

from seqmodels.plumbing.names import short_number

HPARAMS_RUN = "hparams"  # sub-folder of the run's tensorboard/ folder
FINAL_PREFIX = "hparams/"  # tags of the final metrics: hparams/val/f1, hparams/test/f1, ...

# Overrides that say nothing about the model or its training: left out of run names and of the
# HPARAMS overrides column (a key matches itself and the keys below it).
QUIET_OVERRIDES = (
    "hydra",
    "paths",
    "callbacks",
    "logger",
    "num_threads",
    "ckpt_path",
    "test",
    "data.path",
    "data.data_dir",
    "data.download",
    "data.num_workers",
    "trainer.enable_progress_bar",
    "trainer.accelerator",
    "trainer.devices",
    "trainer.limit_train_batches",
    "trainer.limit_val_batches",
    "trainer.limit_test_batches",
    "trainer.log_every_n_steps",
)
# Config keys that are where or how, not what: left out of the HPARAMS columns.
DATA_PLUMBING = ("_target_", "name", "path", "data_dir", "download", "num_workers")
TRAINER_KEYS = (
    "max_epochs",
    "max_steps",
    "gradient_clip_val",
    "accumulate_grad_batches",
    "precision",
)
RUN_NAME_OVERRIDES_MAX = 80  # characters of overrides in a folder name


def override_key(override: str) -> str:
    """``+trainer.max_epochs=3`` -> ``trainer.max_epochs``."""
    return override.split("=", 1)[0].lstrip("+~")


def telling_overrides(overrides: Sequence[str]) -> list[str]:
    """The command-line overrides that change the model or its training (a key given twice:
    its last value, as Hydra takes it)."""
    last = {override_key(o): o for o in overrides}
    return [
        o
        for key, o in last.items()
        if not any(key == quiet or key.startswith(quiet + ".") for quiet in QUIET_OVERRIDES)
    ]


def run_name(data: str, model: str, overrides: Sequence[str] = ()) -> str:
    """A folder name that says what the run is: ``atis-lstm`` plus its overrides.

    ``data``/``model``/``task`` choices are already in the name (or the task folder); a dotted
    key keeps its last part, joined to its value by ``-`` and to the next by ``+``
    (``lr-0.01+hidden_size-64``). Only letters, digits and ``._+-`` are kept: a path with
    ``=``, ``,`` or brackets would not parse as ``ckpt_path=<run>/checkpoints/last.ckpt`` in
    Hydra's override grammar, and the shell or a URL would trip on others.
    """
    parts = []
    for override in telling_overrides(overrides):
        key = override_key(override)
        if key in ("data", "model", "task"):
            continue
        value = short_number(override.split("=", 1)[1]) if "=" in override else ""
        value = re.sub(r"[^A-Za-z0-9._-]", "", value.replace("/", "-").replace(",", "-"))
        parts.append(f"{key.rsplit('.', 1)[-1]}-{value}")
    tail = re.sub(r"[^A-Za-z0-9._+-]", "", "+".join(parts))
    if len(tail) > RUN_NAME_OVERRIDES_MAX:
        tail = tail[:RUN_NAME_OVERRIDES_MAX].rsplit("+", 1)[0] + "+..."
    return f"{data}-{model}" + (f"_{tail}" if tail else "")


def short_class(target: Any) -> str:
    """``torch.optim.AdamW`` -> ``AdamW``."""
    return str(target).rsplit(".", 1)[-1]


def hparam_value(value: Any) -> bool | float | str:
    """A value TensorBoard's hparams plugin takes: bool, number or string."""
    if isinstance(value, bool | int | float | str):
        return value
    return "none" if value is None else str(value)


def run_hparams(config: Mapping[str, Any], overrides: Sequence[str] = ()) -> dict[str, Any]:
    """The hyperparameters that tell runs apart: task, data, model, optimizer, schedule, seed.

    Callbacks, loggers and paths are left out: they clutter the HPARAMS table without telling
    runs apart. The full resolved config stays in the run's ``.hydra/config.yaml`` and
    ``tensorboard/hparams.yaml``.
    """
    hparams: dict[str, Any] = {
        "task": config["task"]["name"],
        "data": config["data"]["name"],
        "seed": config.get("seed"),
    }
    hparams |= {f"model.{k}": v for k, v in config["model"].items()}
    data = config["data"]
    hparams |= {f"data.{k}": v for k, v in data.items() if k not in DATA_PLUMBING}
    module = dict(config["task"]["module"])
    module.pop("_target_", None)
    for group in ("optimizer", "scheduler"):
        settings = dict(module.pop(group, None) or {})
        hparams[group] = short_class(settings.pop("_target_", "none"))
        hparams |= {f"{group}.{k}": v for k, v in settings.items()}
    hparams |= {f"task.{k}": v for k, v in module.items()}
    trainer = config.get("trainer", {})
    hparams |= {f"trainer.{k}": trainer[k] for k in TRAINER_KEYS if k in trainer}
    hparams["overrides"] = " ".join(telling_overrides(overrides))
    return {k: hparam_value(v) for k, v in hparams.items()}


def layout(monitor: str) -> layout_pb2.Layout:
    """Custom Scalars: train vs val loss and the main metric first, gradients and gates below."""

    def chart(title: str, *tags: str) -> layout_pb2.Chart:
        """A chart of these tags (a tag ending in ``*``: every tag that starts so)."""
        regexes = [
            f"^{re.escape(t[:-1])}" if t.endswith("*") else f"^{re.escape(t)}$" for t in tags
        ]
        return layout_pb2.Chart(
            title=title, multiline=layout_pb2.MultilineChartContent(tag=regexes)
        )

    metric = monitor.removeprefix("val/")
    charts = [chart("loss: train vs val", "train/loss", "val/loss")]
    if metric != "loss":
        charts.append(chart(f"{metric}: val per epoch, test at the end", monitor, f"test/{metric}"))
    return layout_pb2.Layout(
        category=[
            layout_pb2.Category(title="training", chart=charts),
            layout_pb2.Category(
                title="learning rate and gradients",
                chart=[
                    chart("learning rate", "lr"),
                    chart("gradient norm (total)", "grad_norm/total"),
                    chart("gradient flow through time", "grad_flow/k=*"),
                ],
                closed=True,
            ),
            layout_pb2.Category(title="gates", chart=[chart("gates", "gates/*")], closed=True),
        ]
    )


def layout_summary(scalars_layout: layout_pb2.Layout) -> Summary:
    """The custom scalars plugin's config summary (TensorBoard's own ``pb`` needs TensorFlow)."""
    tensor = TensorProto(
        dtype="DT_STRING", string_val=[scalars_layout.SerializeToString()], tensor_shape={}
    )
    content = custom_scalar_metadata.create_summary_metadata()
    summary_metadata = SummaryMetadata.FromString(content.SerializeToString())
    return Summary(
        value=[
            Summary.Value(
                tag=custom_scalar_metadata.CONFIG_SUMMARY_TAG,
                metadata=summary_metadata,
                tensor=tensor,
            )
        ]
    )


def hparams_summary(tag: str, data: plugin_data_pb2.HParamsPluginData) -> Summary:
    """An hparams plugin summary (``tensorboard.plugins.hparams.summary`` needs TensorFlow)."""
    summary_metadata = hparams_metadata.create_summary_metadata(data)
    return Summary(
        value=[
            Summary.Value(tag=tag, metadata=summary_metadata, tensor=hparams_metadata.NULL_TENSOR)
        ]
    )


def session_start(hparams: Mapping[str, Any]) -> Summary:
    info = plugin_data_pb2.SessionStartInfo(start_time_secs=time.time())
    for name, value in hparams.items():
        if isinstance(value, bool):  # before numbers: a bool is an int
            info.hparams[name].bool_value = value
        elif isinstance(value, int | float):
            info.hparams[name].number_value = value
        else:
            info.hparams[name].string_value = str(value)
    data = plugin_data_pb2.HParamsPluginData(session_start_info=info)
    return hparams_summary(hparams_metadata.SESSION_START_INFO_TAG, data)


def session_end(finished: bool) -> Summary:
    status = api_pb2.STATUS_SUCCESS if finished else api_pb2.STATUS_ABORTED
    info = plugin_data_pb2.SessionEndInfo(status=status, end_time_secs=time.time())
    data = plugin_data_pb2.HParamsPluginData(session_end_info=info)
    return hparams_summary(hparams_metadata.SESSION_END_INFO_TAG, data)


def hparams_dir(tensorboard_dir: str | Path) -> Path:
    return Path(tensorboard_dir) / HPARAMS_RUN


def write_session_start(tensorboard_dir: str | Path, hparams: dict[str, Any], monitor: str) -> None:
    """At the start of training: the run's HPARAMS row (no metrics yet) and the layout."""
    writer = FileWriter(str(hparams_dir(tensorboard_dir)))
    writer.add_summary(session_start(hparams), global_step=0)
    writer.add_summary(layout_summary(layout(monitor)), global_step=0)
    writer.close()


def write_session_end(
    tensorboard_dir: str | Path, metrics: Mapping[str, float], step: int, finished: bool
) -> None:
    """After testing: the final val/test metrics (``hparams/...``) and the session's status."""
    writer = FileWriter(str(hparams_dir(tensorboard_dir)))
    for name, value in metrics.items():
        writer.add_summary(scalar(FINAL_PREFIX + name, float(value)), global_step=step)
    writer.add_summary(session_end(finished), global_step=step)
    writer.close()
