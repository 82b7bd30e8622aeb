"""Expected failures: bad input or a fault the user can act on.

Each is a :class:`UserError`, or one of the few Hydra and OmegaConf errors that come from the
command line (a missing option, an unknown key or group option, an override that does not
parse). Every entry point prints such an error as one line, ``error: <message>``, without a
traceback, and exits 1 (:func:`errors_reported` inside the task function,
:func:`seqmodels.plumbing.cli.one_line_errors` around it). Anything else is a bug and keeps
its traceback.
"""

from __future__ import annotations

import logging
import os
import re
import signal
import sys
from collections.abc import Iterator
from contextlib import contextmanager

from hydra.core.hydra_config import HydraConfig
from hydra.errors import (
    CompactHydraException,
    ConfigCompositionException,
    InstantiationException,
    OverrideParseException,
)
from hydra.types import RunMode
from omegaconf import DictConfig
from omegaconf.errors import (
    ConfigAttributeError,
    ConfigKeyError,
    InterpolationResolutionError,
    MissingMandatoryValue,
)


class UserError(Exception):
    """An expected failure; the message names the option, file or step and what to do."""


class ConfigError(UserError, ValueError):
    """A configuration value is invalid; the message names the option."""


class DatasetError(UserError, RuntimeError):
    """A dataset file is missing, unreadable, or malformed; the message says which and why."""


class CheckpointError(UserError, RuntimeError):
    """A checkpoint file is missing, corrupt, or was not written by seqmodels."""


class NonFiniteLossError(UserError, ArithmeticError):
    """The training loss became NaN or infinite; the message names the step."""


def user_error_in(exc: BaseException | None) -> UserError | None:
    """``exc`` itself or the :class:`UserError` it was raised from, if any.

    Hydra's ``instantiate`` wraps an error raised in a constructor in an
    ``InstantiationException`` ``from`` the original; this finds the original.
    """
    while exc is not None:
        if isinstance(exc, UserError):
            return exc
        exc = exc.__cause__
    return None


def one_line(text: str) -> str:
    """A multi-line message on one line: an indented list after ``header:`` joins with commas.

    Hydra's search-path listing and OmegaConf's ``full_key:``/``object_type=`` detail lines
    (indented, not after a header) are dropped: the message names the key already.
    """
    parts: list[str] = []
    in_list = False
    for line in text.split("\nConfig search path:")[0].splitlines():
        if not line.strip():
            continue
        if line[0] in " \t":
            if in_list:
                parts[-1] += (" " if parts[-1].endswith(":") else ", ") + line.strip()
            continue
        parts.append(line.strip())
        in_list = line.rstrip().endswith(":")
    joined = ""
    for part in parts:
        joined += (" " if joined.endswith((".", ":", ";")) else ". ") if joined else ""
        joined += part
    return joined


def unknown_key(err: ConfigCompositionException) -> str | None:
    """``trainer.foo=1`` for a key the config lacks: what the group has and how to add one."""
    cause = err.__cause__
    if not isinstance(cause, (ConfigAttributeError, ConfigKeyError)) or not cause.full_key:
        return None
    add = re.search(r"use \+(\S+)", str(err))
    override = add.group(1) if add else cause.full_key
    parent, _, key = str(cause.full_key).rpartition(".")
    node = cause.parent_node
    keys = [str(k) for k in node.keys() if k != "hydra"] if isinstance(node, DictConfig) else []
    has = f" (it has {', '.join(keys)})" if keys else ""
    return (
        f"{override}: {parent or 'the config'} has no option '{key}'{has}; "
        f"to add a new one, use +{override}"
    )


# What gloo, NCCL and the TCP store say when another process of the run is gone.
LOST_PEER = re.compile(
    r"Connection (?:closed|reset) by peer|remote worker crashing|remote process exited"
    r"|NCCL communicator was aborted|Broken pipe"
)


def lost_peer(err: BaseException) -> str | None:
    """A collective that failed because another process of a distributed run stopped (killed,
    out of memory, a lost node): which process this is, what happened, and how to go on."""
    if not isinstance(err, RuntimeError) or "torch.distributed" not in sys.modules:
        return None
    import torch.distributed as dist  # loaded already (above)

    # ``import torch`` loads torch.distributed too: only a process group that was set up makes
    # this a distributed run (a DataLoader worker's broken pipe in one process is not).
    if not (dist.is_available() and dist.is_initialized()):
        return None
    found = LOST_PEER.search(str(err))
    if found is None:
        return None
    rank, world = dist.get_rank(), dist.get_world_size()
    return (
        f"another process of this distributed run stopped (this is rank {rank} of {world}; "
        f"{type(err).__name__}: {found.group(0)}); once every process has stopped, start them "
        "all again with the same command plus ckpt_path=last (docs/scaling-out.md)"
    )


def error_message(err: BaseException) -> str | None:
    """The one-line message of an expected error; None for anything else (a bug)."""
    user = user_error_in(err)
    if user is not None:
        return one_line(str(user))
    peer = lost_peer(err)
    if peer is not None:
        return peer
    if isinstance(err, MissingMandatoryValue):
        return f"{err.full_key} is required: add {err.full_key}=<value> to the command"
    if isinstance(err, InterpolationResolutionError):
        return f"{err.full_key}: {one_line(str(err))}"
    if isinstance(err, InstantiationException):
        # Options a class does not take (+trainer.foo=1) or a _target_ that does not exist;
        # any other error inside a constructor is a bug and keeps its traceback.
        target = re.search(r"target '([^']+)'", str(err))
        where = re.search(r"full_key: (\S+)", str(err))
        cause = err.__cause__
        if isinstance(cause, TypeError) and "argument" in str(cause) and target and where:
            return f"{where.group(1)}: {cause} (options of {target.group(1)})"
        if str(err).startswith("Error locating target"):
            return one_line(str(err))
        return None
    if isinstance(err, OverrideParseException):
        return (
            f"cannot parse the override '{err.override}': {err.message.splitlines()[0]} "
            "(syntax: https://hydra.cc/docs/advanced/override_grammar/basic/)"
        )
    if isinstance(err, ConfigCompositionException):
        return unknown_key(err) or one_line(str(err))
    if isinstance(err, CompactHydraException):  # e.g. a missing --config-dir
        return one_line(str(err))
    return None


def print_error(message: str) -> None:
    """The one line a user sees: ``error: <message>`` on stderr."""
    print(f"error: {message}", file=sys.stderr, flush=True)


def log_to_files(log: logging.Logger, message: str) -> None:
    """``message`` as an ERROR record in the run's log files only (stderr gets it once, plain)."""
    record = log.makeRecord(log.name, logging.ERROR, __file__, 0, "%s", (message,), None)
    for handler in logging.getLogger().handlers:
        if isinstance(handler, logging.FileHandler):
            handler.handle(record)


class ReportedError(CompactHydraException):
    """An expected error handed to Hydra, so that a sweep goes on with its other jobs."""


def in_multirun() -> bool:
    return HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN


def lightning_sigterm(exit_: SystemExit) -> bool:
    """Lightning's ``SIGTERMException``; looked up only where Lightning is loaded, so that
    inference (tag, generate), which never imports it, starts without it."""
    exceptions = sys.modules.get("lightning.pytorch.utilities.exceptions")
    return exceptions is not None and isinstance(exit_, exceptions.SIGTERMException)


@contextmanager
def errors_reported(log: logging.Logger) -> Iterator[None]:
    """Around a Hydra task function: an expected error becomes one line and exit status 1.

    A single run writes ``error: <message>`` to stderr and the message to its log file, then
    exits 1 at once (so Hydra adds nothing). In a multirun (``-m``) the job logs the error and
    Hydra goes on with the other jobs; after the sweep it prints ``Error executing job with
    overrides: [...]`` for the first failed job and
    :func:`seqmodels.plumbing.cli.one_line_errors` its
    message. ``HYDRA_FULL_ERROR=1`` shows the full chain instead. A SIGTERM (which Lightning
    turns into a ``SystemExit`` with status 0 once the current batch is done) exits 143, as a
    process killed by SIGTERM would. Other errors propagate.
    """
    try:
        yield
    except SystemExit as exit_:
        if not lightning_sigterm(exit_):
            raise
        log.error("stopped by SIGTERM")
        raise SystemExit(128 + signal.SIGTERM) from None
    except Exception as err:
        message = error_message(err)
        if message is None:
            raise
        if HydraConfig.initialized() and not in_multirun() and not full_errors_wanted():
            log_to_files(log, message)
            print_error(message)
            raise SystemExit(1) from None
        log.error("%s", message)
        raise ReportedError(message) from err


# Set by seqmodels.plumbing.cli.one_line_errors beside HYDRA_FULL_ERROR=1 (which makes Hydra
# hand every error to it): a process it starts (a DDP rank) then knows the user did not ask
# for tracebacks.
ONE_LINE_MARKER = "SEQMODELS_ONE_LINE_ERRORS"


def full_errors_wanted() -> bool:
    """The user set ``HYDRA_FULL_ERROR=1``: Hydra's own reporting, with tracebacks."""
    return os.environ.get("HYDRA_FULL_ERROR") == "1" and os.environ.get(ONE_LINE_MARKER) != "1"
