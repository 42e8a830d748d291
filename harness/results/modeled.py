"""Measured or modeled: which metrics a board only models, read from the board itself.

A board that cannot measure some quantities (a virtual board has no INA3221 rails or thermal
zones) lists them in `/etc/jetson-hil/modeled`, one category a line; a board whose CPU is emulated
(qemu-user) lists `emulated-cpu`, and what it times is neither measured on a Jetson nor modeled.
Beside it, `/etc/jetson-hil/differs` says where the board's userspace differs from the JetPack it
names (Python, glibc, architecture). The harness never asks what kind of board it is; it reads these
files, and a real Jetson simply has none.
"""

from __future__ import annotations

from collections.abc import Iterable
from collections.abc import Set as AbstractSet

from harness.board.board import Board
from harness.errors import HarnessError
from harness.results.table import Row, RowContext, Source
from harness.transport.base import Transport

MODELED_FILE = "/etc/jetson-hil/modeled"
DIFFERS_FILE = "/etc/jetson-hil/differs"
_ABSENT = "@@jetson-hil:no-such-file"

EMULATED_CPU = "emulated-cpu"
#: Metrics derived from each category: a metric is modeled when its name is, or starts with `<prefix>_`,
#: one of these prefixes and the board lists the category. FPS/W and J/frame inherit power's source, except
#: on an emulated CPU, where every figure the CPU times is the emulation's.
CATEGORY_METRICS: dict[str, tuple[str, ...]] = {
    EMULATED_CPU: ("raw_fps", "pipeline_fps", "fps", "latency", "trtexec", "raw_over_trtexec", "energy_per_frame",
                   "fps_per_w"),
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
    """'emulated-cpu' when the board's CPU is emulated and the CPU timed `metric`; else 'modeled' when `metric`
    derives from a category the board models (unknown categories match by name); else 'measured'."""
    ordered = sorted(modeled, key=lambda category: category != EMULATED_CPU)
    for category in ordered:
        for prefix in CATEGORY_METRICS.get(category, (category,)):
            if metric == prefix or metric.startswith(f"{prefix}_"):
                return EMULATED_CPU if category == EMULATED_CPU else "modeled"
    return "measured"


def _board_file(target: Board | Transport, path: str, without: str) -> str | None:
    """The text of a board's file, None only when it is absent. Fails closed: a file that exists but cannot be
    read raises (`without` says what is lost), rather than passing for absent."""
    transport = target.transport if isinstance(target, Board) else target
    result = transport.run(f"if [ -e {path} ]; then cat {path}; else echo {_ABSENT}; fi", timeout=15)
    if not result.ok:
        detail = (result.stderr or result.stdout).strip().splitlines()[-1:] or ["no output"]
        raise HarnessError(f"{transport.target}: cannot read {path} ({detail[0]}); without it {without}: fix its "
                           "permissions")
    return None if result.stdout.strip() == _ABSENT else result.stdout


def read_modeled(target: Board | Transport) -> frozenset[str]:
    """The board's modeled categories; empty only when the file is absent (every real Jetson)."""
    text = _board_file(target, MODELED_FILE, "no figure can be called measured or modeled")
    return frozenset() if text is None else modeled_metrics(text)


def read_differences(target: Board | Transport) -> list[str]:
    """Where the board's userspace differs from its JetPack, one `what: this board's (JetPack's)` each; none on a
    real Jetson."""
    text = _board_file(target, DIFFERS_FILE, "results could pass for a real JetPack's")
    lines = (line.split("#", 1)[0].strip() for line in (text or "").splitlines())
    return [line for line in lines if line]


def observations(context: RowContext, metrics: Iterable[tuple], modeled: AbstractSet[str]) -> list[Row]:
    """Rows for (metric, value, unit[, spread]) tuples, such as `WindowSummary.to_rows()`, each with its source."""
    return [context.row(metric, value, unit, source_of(metric, modeled), *spread)
            for metric, value, unit, *spread in metrics]
