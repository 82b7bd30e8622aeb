"""Entry points that answer fast: one Hydra composition, no job set-up, where nothing needs more.

``hydra.main`` composes the config twice (once to find the run mode) and configures logging and
a job before the task runs: about a third of ``scripts/tag.py``'s start-up after ``import
torch``. A command line of plain overrides (``ckpt_path=... text=...``) needs none of that, so
:func:`quick_main` composes it once with Hydra's Compose API; flags (``--help``, ``--cfg job``,
``-m``) and ``hydra.*`` overrides still go to the full ``hydra.main`` entry.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from typing import Any

from hydra import compose, initialize_config_dir
from omegaconf import DictConfig

from seqmodels.core.errors import error_message, full_errors_wanted, print_error
from seqmodels.plumbing.cli import CONFIG_DIR


def needs_hydra_main(args: Sequence[str]) -> bool:
    """A flag or a ``hydra.``/``hydra/`` override: Hydra's own command line handles it."""
    return any(a.startswith("-") or a.lstrip("+~").startswith("hydra") for a in args)


def quick_main(
    config_name: str,
    run: Callable[[DictConfig], Any],
    hydra_main: Callable[[], Any],
    args: Sequence[str] | None = None,
) -> Any:
    """``run`` on the config ``config_name`` composed with the command line's overrides.

    An expected error is one line, ``error: <message>``, and exit status 1, as from
    :func:`seqmodels.plumbing.cli.one_line_errors` (``HYDRA_FULL_ERROR=1``: the traceback).
    """
    args = list(sys.argv[1:] if args is None else args)
    if needs_hydra_main(args):
        return hydra_main()
    try:
        with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
            cfg = compose(config_name, overrides=args)
        return run(cfg)
    except Exception as err:
        message = None if full_errors_wanted() else error_message(err)
        if message is None:
            raise
        print_error(message)
        raise SystemExit(1) from None
