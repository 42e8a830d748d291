"""Measured or modeled: which metrics a board only models, read from the board itself.

A board that cannot measure some quantities (a virtual board has no INA3221 rails or thermal
zones) lists them in `/etc/jetson-hil/modeled`, one category a line. The harness never asks what
kind of board it is; it reads this file, and a real Jetson simply has none.
"""

from __future__ import annotations

from collections.abc import Iterable
from collections.abc import Set as AbstractSet

from harness.board.board import Board
from harness.errors import HarnessError
from harness.results.table import Row, RowContext, Source
from harness.transport.base import Transport

MODELED_FILE = "/etc/jetson-hil/modeled"
_ABSENT = "@@jetson-hil:no-modeled-file"

#: Metrics derived from each category: a metric is modeled when its name is, or starts with `<prefix>_`,
#: one of these prefixes and the board lists the category. FPS/W and J/frame inherit power's source.
CATEGORY_METRICS: dict[str, tuple[str, ...]] = {
    "power": ("power", "energy", "fps_per_w"),
    "temperature": ("temperature",),
    "clocks": ("clock", "throttled"),
    "gpu": ("gpu",),
    "memory": ("ram", "swap", "memory"),
}


def modeled_metrics(text: str) -> frozenset[str]:
    """Categories listed in the modeled file: one per line, `#` comments and blank lines ignored."""
    names = (line.split("#", 1)[0].strip().lower() for line in text.splitlines())
    return frozenset(name for name in names if name)


def source_of(metric: str, modeled: AbstractSet[str]) -> Source:
    """'modeled' when `metric` derives from a category the board models; unknown categories match by name."""
    for category in modeled:
        for prefix in CATEGORY_METRICS.get(category, (category,)):
            if metric == prefix or metric.startswith(f"{prefix}_"):
                return "modeled"
    return "measured"


def read_modeled(target: Board | Transport) -> frozenset[str]:
    """The board's modeled categories; empty only when the file is absent (every real Jetson).

    Fails closed: a file that exists but cannot be read raises, rather than marking modeled figures measured."""
    transport = target.transport if isinstance(target, Board) else target
    result = transport.run(f"if [ -e {MODELED_FILE} ]; then cat {MODELED_FILE}; else echo {_ABSENT}; fi", timeout=15)
    if not result.ok:
        detail = (result.stderr or result.stdout).strip().splitlines()[-1:] or ["no output"]
        raise HarnessError(f"{transport.target}: cannot read {MODELED_FILE} ({detail[0]}); without it no figure "
                           "can be called measured or modeled: fix its permissions")
    if result.stdout.strip() == _ABSENT:
        return frozenset()
    return modeled_metrics(result.stdout)


def observations(context: RowContext, metrics: Iterable[tuple], modeled: AbstractSet[str]) -> list[Row]:
    """Rows for (metric, value, unit[, spread]) tuples, such as `WindowSummary.to_rows()`, each with its source."""
    return [context.row(metric, value, unit, source_of(metric, modeled), *spread)
            for metric, value, unit, *spread in metrics]
