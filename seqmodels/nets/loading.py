"""A checkpoint's network, read without the training stack (what tag, generate and export use)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from torch import nn

from seqmodels.core.checkpoints import (
    check_kind,
    init_kwargs,
    load_weights,
    lookup,
    read_checkpoint,
    task_name,
)
from seqmodels.nets.char_lm import CharLMNet
from seqmodels.nets.long_range import LongRangeNet
from seqmodels.nets.slot_tagger import SlotTaggerNet

# By the ``task.name`` a checkpoint stores (the same names as seqmodels.plumbing.registry.TASKS).
NETS: dict[str, type[nn.Module]] = {
    "slot_filling": SlotTaggerNet,
    "char_lm": CharLMNet,
    "long_range": LongRangeNet,
}


def load_net(path: str | Path, data_kind: str | None = None) -> tuple[nn.Module, dict[str, Any]]:
    """The network saved at ``path`` (on the CPU, in eval mode) and the checkpoint's contents.

    ``data_kind`` (``"text"``, ``"slot_filling"``) refuses a checkpoint of another task. As
    :func:`seqmodels.commands.evaluate.load_module`, the class comes from the project's own
    table by the stored task name, built from plain values: a checkpoint never chooses what
    code runs.
    """
    checkpoint = read_checkpoint(path)
    cls = lookup(NETS, task_name(checkpoint), "task", path)
    check_kind(cls, checkpoint, path, data_kind)
    net = cls(**init_kwargs(cls, checkpoint["hyper_parameters"]))
    load_weights(net, checkpoint, path)
    return net.eval(), checkpoint
