"""Numbers as they read in names and labels: run folders, report tables and charts."""

from __future__ import annotations

import re

FLOAT = re.compile(r"[-+]?(\d+\.\d*|\.\d+|\d+(\.\d*)?[eE][-+]?\d+)")


def short_number(value: str, digits: int = 4) -> str:
    """A float as ``digits`` significant digits (``0.000587194737873281`` -> ``0.0005872``,
    ``1e-3`` -> ``0.001``); anything else (ints, words, lists) as it is. An Optuna search's
    floats carry 15 digits nobody reads, and make folder names and chart labels too long."""
    if not FLOAT.fullmatch(value.strip()):
        return value
    return f"{float(value):.{digits}g}"
