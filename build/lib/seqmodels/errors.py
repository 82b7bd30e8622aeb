"""Expected failures: bad input or a fault the user can act on.

Each is a :class:`UserError`; ``scripts/train.py`` (``seqmodels.train.main``) prints its message
alone, without a traceback, and exits 1. Anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import logging
import signal
from collections.abc import Iterator
from contextlib import contextmanager

from hydra.errors import CompactHydraException
from lightning.pytorch.utilities.exceptions import SIGTERMException


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


class ReportedError(CompactHydraException):
    """A :class:`UserError` handed to Hydra, which prints this kind of error without a traceback."""


@contextmanager
def errors_reported(log: logging.Logger) -> Iterator[None]:
    """Around a Hydra task function: expected errors become a short message and exit code 1.

    The message goes to the run's log and, through Hydra, to stderr (in a multirun after
    "Error executing job with overrides: [...]"); ``HYDRA_FULL_ERROR=1`` shows the full chain.
    A SIGTERM (which Lightning turns into a ``SystemExit`` with status 0 once the current
    batch is done) exits 143, as a process killed by SIGTERM would. Other errors propagate.
    """
    try:
        yield
    except SIGTERMException:
        log.error("stopped by SIGTERM")
        raise SystemExit(128 + signal.SIGTERM) from None
    except Exception as err:
        cause = user_error_in(err)
        if cause is None:
            raise
        log.error("%s", cause)
        raise ReportedError(str(cause)) from err
