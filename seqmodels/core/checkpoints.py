"""Read a checkpoint written by ``train()`` as plain values, or say clearly why it is not one."""

from __future__ import annotations

import inspect
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from seqmodels.core.errors import CheckpointError, ConfigError

REQUIRED_KEYS = ("config", "hyper_parameters", "state_dict")


def load_failure(err: Exception) -> str:
    """What ``torch.load`` found wrong with a file, without its advice about weights_only."""
    text = str(err)
    marker = "WeightsUnpickler error:"
    if marker in text:  # the cause sits between torch's advice and its documentation link
        cause = text.split(marker, 1)[1].split("Check the documentation", 1)[0]
        return " ".join(cause.split())
    first = text.strip().splitlines()[0] if text.strip() else ""
    return f"{type(err).__name__}: {first}" if first else type(err).__name__


def read_checkpoint(path: str | Path) -> dict[str, Any]:
    """The checkpoint at ``path``, read weights-only; refuses one not written by ``train()``."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist")
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # foreign bytes: UnpicklingError, KeyError, IndexError, ... (any)
        raise CheckpointError(
            f"{path} is not a readable checkpoint: damaged, or not written by torch.save "
            f"({load_failure(err)})"
        ) from err
    if not isinstance(checkpoint, dict):
        raise CheckpointError(
            f"{path} holds a {type(checkpoint).__name__}, not a checkpoint written by seqmodels' "
            "train()"
        )
    missing = [k for k in REQUIRED_KEYS if k not in checkpoint]
    if missing:
        raise CheckpointError(
            f"{path} has no {', '.join(missing)}: it was not written by seqmodels' train() "
            "(checkpoints hold their run's config since scale-out support)"
        )
    return checkpoint


def flat(tree: Any, prefix: str = "") -> dict[str, Any]:
    """``{"model.hidden_size": 256, ...}`` for a nested dict of plain values."""
    if not isinstance(tree, dict):
        return {prefix: tree}
    out: dict[str, Any] = {}
    for key, value in tree.items():
        out |= flat(value, f"{prefix}.{key}" if prefix else str(key))
    return out


# Options that change no weights: never the reason a checkpoint does not fit.
CHANGE_NO_WEIGHTS = (
    "data.data_dir",  # the cache folder may move
    "model.char_lm_features_cache_mib",  # a cache of frozen LMs' features
)


def check_resumable(path: str | Path, module: torch.nn.Module, config: dict[str, Any]) -> None:
    """Refuse, naming the options that differ, a checkpoint whose weights ``module`` cannot take.

    ``config`` is this run's resolved config; the checkpoint holds the one it was trained with.
    """
    checkpoint = read_checkpoint(path)
    for prefix, layer in module.named_modules():  # layers loading brings back (restore_layers)
        restore = getattr(layer, "restore_layers", None)
        if callable(restore):
            restore(checkpoint["state_dict"], f"{prefix}." if prefix else "")
    saved = {k: tuple(v.shape) for k, v in checkpoint["state_dict"].items()}
    wanted = {k: tuple(v.shape) for k, v in module.state_dict().items()}
    if saved == wanted:
        return
    old, new = flat(checkpoint["config"]), flat(config)
    differ = [
        f"{key}={old.get(key)} (this run: {new.get(key)})"
        for key in sorted(old.keys() | new.keys())
        if key.split(".")[0] in ("task", "model", "data")
        and key not in CHANGE_NO_WEIGHTS
        and old.get(key) != new.get(key)
    ]
    weights = sorted(k for k in saved.keys() | wanted.keys() if saved.get(k) != wanted.get(k))
    detail = (
        f"; options that differ: {', '.join(differ[:6])}"
        if differ
        else f"; weights that differ: {', '.join(weights[:4])}"
    )
    raise CheckpointError(
        f"cannot resume from {path}: it holds weights of another model than this run builds"
        f"{detail}. Resume with the options it was trained with, or start a new run"
    )


# A run folder's name: <date>_<time>_<microseconds>_<what the run is>_<process id>.
RUN_FOLDER = re.compile(r"\d{4}-\d\d-\d\d_\d\d-\d\d-\d\d_\d+_(?P<what>.+)_\d+")


def has_last(run_dir: Path) -> bool:
    """Whether ``ckpt_path=last`` finds a checkpoint in the run (Lightning's ``last*.ckpt``)."""
    return any("last" in p.name for p in (run_dir / "checkpoints").glob("*.ckpt"))


def latest_like(run_dir: Path) -> Path | None:
    """The newest run folder beside ``run_dir`` with a last checkpoint that trained what this
    run trains (the same data, model and overrides; else the same data and model)."""
    found = RUN_FOLDER.fullmatch(run_dir.name)
    if found is None or not run_dir.parent.is_dir():
        return None
    what = found["what"]
    runs = [
        (m["what"], p)
        for p in run_dir.parent.iterdir()
        if p != run_dir and (m := RUN_FOLDER.fullmatch(p.name)) and has_last(p)
    ]
    for alike in (lambda w: w == what, lambda w: w.split("_")[0] == what.split("_")[0]):
        matching = sorted(p for w, p in runs if alike(w))  # names start with the time
        if matching:
            return matching[-1]
    return None


def check_last_exists(run_dir: str | Path) -> None:
    """Refuse ``ckpt_path=last`` in a run folder without a last checkpoint (a new folder, as
    each run gets unless ``hydra.run.dir`` names the one to continue); Lightning would start a
    fresh run with advice about ``save_last``."""
    run_dir = Path(run_dir).expanduser()
    if has_last(run_dir):
        return
    latest = latest_like(run_dir.resolve())
    hint = f" (the latest like this run: hydra.run.dir={latest})" if latest else ""
    raise ConfigError(
        f"ckpt_path=last continues a run, but {run_dir} is a new run folder without "
        f"checkpoints/last.ckpt: add hydra.run.dir=<the run to continue>{hint}"
    )


def lookup(table: Mapping[str, type], name: Any, what: str, path: Any) -> type:
    """``table[name]``: one of seqmodels' own classes by the name a checkpoint stores."""
    if not isinstance(name, str) or name not in table:
        raise CheckpointError(
            f"{path} names {what} {name!r}, which is not one of seqmodels' own "
            f"({', '.join(table)}); it was not written by this version of seqmodels' train()"
        )
    return table[name]


# Optimizer and scheduler configs name torch classes by ``_target_``; they are built only when
# training (configure_optimizers), which loading a checkpoint for inference never does.
TRAINING_ONLY = ("optimizer", "scheduler")


def init_kwargs(cls: type, values: Mapping[str, Any]) -> dict[str, Any]:
    """The entries of ``values`` that ``cls.__init__`` takes by name (``_target_`` dropped).

    Refuses a ``_target_`` nested anywhere else: the model, data and vocabulary options a
    checkpoint holds are plain values and never ask for objects.
    """
    accepted = inspect.signature(cls.__init__).parameters
    kwargs = {k: v for k, v in values.items() if k in accepted and k != "self"}
    checked = {k: v for k, v in kwargs.items() if k not in TRAINING_ONLY}
    if "_target_" in _all_keys(checked):
        raise CheckpointError(
            f"the {cls.__name__} options in this checkpoint name a class (_target_) where "
            "seqmodels stores plain values; refusing to load it"
        )
    return kwargs


def _all_keys(tree: Any) -> list[str]:
    """Every key of the dicts nested in ``tree`` (dicts and lists), its own keys excepted."""
    if isinstance(tree, Mapping):
        children = list(tree.values())
    elif isinstance(tree, list | tuple):
        children = list(tree)
    else:
        return []
    keys: list[str] = []
    for child in children:
        if isinstance(child, Mapping):
            keys += [str(k) for k in child]
        keys += _all_keys(child)
    return keys


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
