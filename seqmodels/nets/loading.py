"""A checkpoint's network, read without the training stack (what tag, generate and export use)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from torch import nn

from seqmodels.checkpoints import init_kwargs, lookup, read_checkpoint
from seqmodels.errors import CheckpointError
from seqmodels.nets.char_lm import CharLMNet
from seqmodels.nets.long_range import LongRangeNet
from seqmodels.nets.slot_tagger import SlotTaggerNet

# By the ``task.name`` a checkpoint stores (the same names as seqmodels.registry.TASKS).
NETS: dict[str, type[nn.Module]] = {
    "slot_filling": SlotTaggerNet,
    "char_lm": CharLMNet,
    "long_range": LongRangeNet,
}


def task_name(checkpoint: dict[str, Any]) -> Any:
    """The ``task.name`` a checkpoint's run config stores."""
    return (checkpoint.get("config") or {}).get("task", {}).get("name")


def check_kind(cls: type, checkpoint: dict[str, Any], path: Any, data_kind: str | None) -> None:
    """Refuse a checkpoint whose task is not for ``data_kind`` data, naming the task it is."""
    if data_kind is not None and getattr(cls, "data_kind", None) != data_kind:
        raise CheckpointError(
            f"{path} is a task={task_name(checkpoint)} checkpoint; this needs a model trained "
            f"on {data_kind} data"
        )


def load_weights(module: nn.Module, checkpoint: dict[str, Any], path: Any) -> None:
    """The checkpoint's weights into ``module``; a mismatch is one clear error."""
    try:
        module.load_state_dict(checkpoint["state_dict"])
    except RuntimeError as err:
        raise CheckpointError(f"{path}: its weights do not fit its own config ({err})") from err


def load_net(path: str | Path, data_kind: str | None = None) -> tuple[nn.Module, dict[str, Any]]:
    """The network saved at ``path`` (on the CPU, in eval mode) and the checkpoint's contents.

    ``data_kind`` (``"text"``, ``"slot_filling"``) refuses a checkpoint of another task. As
    :func:`seqmodels.evaluate.load_module`, the class comes from the project's own table by the
    stored task name, built from plain values: a checkpoint never chooses what code runs.
    """
    checkpoint = read_checkpoint(path)
    cls = lookup(NETS, task_name(checkpoint), "task", path)
    check_kind(cls, checkpoint, path, data_kind)
    net = cls(**init_kwargs(cls, checkpoint["hyper_parameters"]))
    load_weights(net, checkpoint, path)
    return net.eval(), checkpoint
