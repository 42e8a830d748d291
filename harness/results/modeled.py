"""Measured or modeled: which metrics a board only models, read from the board itself.

A board that cannot measure some quantities (a virtual board has no INA3221 rails or thermal
zones) lists them in `/etc/jetson-hil/modeled`, one category a line. The harness never asks what
kind of board it is; it reads this file, and a real Jetson simply has none.
"""

from __future__ import annotations

from collections.abc import Iterable
from collections.abc import Set as AbstractSet

from harness.board.board import Board
from harness.results.table import Row, RowContext, Source
from harness.transport.base import Transport

MODELED_FILE = "/etc/jetson-hil/modeled"

#: Metrics derived from each category: a metric is modeled when its name is, or starts with `<prefix>_`,
#: one of these prefixes and the board lists the category. FPS/W and J/frame inherit power's source.
CATEGORY_METRICS: dict[str, tuple[str, ...]] = {
    "power": ("power", "energy", "fps_per_w"),
    "temperature": ("temperature",),
    "clocks": ("clock", "throttled"),
    "gpu": ("gpu",),
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
    """The board's modeled categories; empty when the file is absent (every real Jetson)."""
    transport = target.transport if isinstance(target, Board) else target
    return modeled_metrics(transport.run(f"cat {MODELED_FILE} 2>/dev/null", timeout=15).stdout)


def observations(context: RowContext, metrics: Iterable[tuple[str, float, str]],
                 modeled: AbstractSet[str]) -> list[Row]:
    """Rows for (metric, value, unit) triples, such as `WindowSummary.to_rows()`, each with its source."""
    return [context.row(metric, value, unit, source_of(metric, modeled)) for metric, value, unit in metrics]
