"""Floors suggested from the history (`hil floors suggest`): what a farm's first weeks measured, as a `floors:`
section of lab.yaml, so that nobody types a number.

Per owner (a board, or a profile: every board of it) and configuration (power mode, precision, batch, backend,
device, metric), the figures of the last N runs in which that configuration's test passed: the worst of them less
their spread, rounded down to 3 significant digits. The spread is the larger of the range of those figures
(max - min) and the largest spread of one run's own rounds (a row's `spread` is relative to its value). A figure
is only ever taken with figures of the same backend and device (a floor holds for those alone), and, where a floor
cannot tell them apart, the lowest floor is kept: of the quantizers a configuration was measured with, of a
profile's boards, and of the phases of fps_per_w (a floor names no phase). A floor that would be 0 or less (the
spread is as large as the worst figure) is left out, with the reason.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from decimal import ROUND_FLOOR, Decimal
from typing import Literal, get_args

import yaml

from harness.profiles import Precision, ThroughputFloor
from harness.results.table import Row

#: the metrics a floor may be set on (ThroughputFloor.metric), all of them better when higher
FLOOR_METRICS = ("raw_fps", "pipeline_fps", "fps_per_w")
#: what the floors are set per: each board on its own, or every board of a profile together
Owner = Literal["board", "profile"]
OWNERS: tuple[str, ...] = get_args(Owner)
SIGNIFICANT = 3

#: what a floor says: power mode, precision, batch, backend, device, metric
FloorKey = tuple[str, str, int, str, str | None, str]


@dataclass(frozen=True)
class RunSeen:
    """A run a suggestion was taken from, with the time of its newest figure there."""

    name: str
    time: dt.datetime


@dataclass(frozen=True)
class Suggestion:
    """One floor (or why there is none) and what it came from: `worst`, `spread` and `runs` of the figures that set
    it (those of `board`, where the owner is a profile), and `seen`, every run its figures came from."""

    owner: str
    key: FloorKey
    board: str
    worst: float
    spread: float
    runs: tuple[RunSeen, ...]
    seen: tuple[RunSeen, ...]
    floor: ThroughputFloor | None
    #: why no floor is suggested (None when `floor` is set)
    left_out: str | None = None

    def describe(self) -> str:
        mode, precision, batch, backend, device, metric = self.key
        what = f"{self.owner} {metric} {mode} {precision} b{batch} {backend}" + (f" on {device}" if device else "")
        return what + (f" ({self.board})" if self.board != self.owner else "")


@dataclass
class Suggestions:
    """Every suggestion per owner (sorted), and notes on figures that could not make a floor."""

    by: Owner
    last: int
    owners: dict[str, list[Suggestion]] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def floors(self) -> dict[str, list[ThroughputFloor]]:
        """The floors, per owner, that have one."""
        found = {owner: [s.floor for s in items if s.floor is not None] for owner, items in self.owners.items()}
        return {owner: floors for owner, floors in found.items() if floors}

    @property
    def left_out(self) -> list[Suggestion]:
        return [s for items in self.owners.values() for s in items if s.floor is None]


def round_down(value: float, digits: int = SIGNIFICANT) -> Decimal:
    """`value` (> 0) cut to `digits` significant digits, never rounded up: 291.87 → 291, 0.28791 → 0.287."""
    exact = Decimal(repr(value))
    return exact.quantize(Decimal(1).scaleb(exact.adjusted() - digits + 1), rounding=ROUND_FLOOR)


def _time(row: Row) -> dt.datetime:
    return dt.datetime.fromisoformat(row.time).astimezone(dt.timezone.utc)


def _unusable(row: Row) -> str | None:
    """Why a figure cannot be a floor's (a floor names all of these), None when it can."""
    if row.power_mode is None or row.batch is None or row.batch < 1 or not row.backend:
        return "it names no power mode, batch or backend"
    if row.precision not in get_args(Precision):
        return f"its precision {row.precision!r} is not one a floor takes"
    return None


@dataclass(frozen=True)
class _Group:
    """The figures of one board's configuration (quantizer and phase included) in its newest runs."""

    board: str
    worst: float
    spread: float
    runs: tuple[RunSeen, ...]

    @property
    def floor(self) -> float:
        return self.worst - self.spread


def _group(board: str, rows: list[Row], last: int) -> _Group:
    by_run: dict[str, list[Row]] = defaultdict(list)
    for row in rows:
        by_run[row.run].append(row)
    seen = sorted((RunSeen(name, max(_time(r) for r in figures)) for name, figures in by_run.items()),
                  key=lambda run: (run.time, run.name), reverse=True)[:last]
    taken = [row for run in seen for row in by_run[run.name]]
    values = [row.value for row in taken]
    within = max((abs(row.spread * row.value) for row in taken if row.spread is not None), default=0.0)
    return _Group(board, min(values), max(max(values) - min(values), within), tuple(reversed(seen)))


def suggest(rows: Iterable[Row], last: int, by: Owner = "board") -> Suggestions:
    """Floors from passing figures (`History.passing`): per owner and configuration, the worst figure of the last
    `last` runs less their spread, rounded down to 3 significant digits. Rows of other metrics, and figures that
    were not measured, are ignored."""
    if last < 1:
        raise ValueError(f"last must be 1 or more, got {last}")
    if by not in OWNERS:
        raise ValueError(f"by must be one of {', '.join(OWNERS)}, got {by!r}")
    fine: dict[tuple, list[Row]] = defaultdict(list)
    unusable: dict[str, int] = defaultdict(int)
    for row in rows:
        if row.metric not in FLOOR_METRICS or row.source != "measured":
            continue
        if (why := _unusable(row)) is not None:
            unusable[why] += 1
            continue
        owner = row.board if by == "board" else row.profile
        floor_key: FloorKey = (str(row.power_mode), str(row.precision), int(row.batch or 0), str(row.backend),
                               row.device, row.metric)
        fine[owner, floor_key, row.board, row.quantizer, row.phase].append(row)
    merged: dict[tuple[str, FloorKey], list[_Group]] = defaultdict(list)
    for (owner, floor_key, board, *_), figures in fine.items():
        merged[owner, floor_key].append(_group(board, figures, last))
    result = Suggestions(by=by, last=last, notes=[f"{count} figure(s) left out: {why}" for why, count in
                                                   sorted(unusable.items())])
    for (owner, floor_key), groups in merged.items():
        lowest = min(groups, key=lambda g: g.floor)
        seen = _union(run for g in groups for run in g.runs)
        mode, precision, batch, backend, device, metric = floor_key
        floor, why = None, None
        if lowest.floor > 0:
            minimum = round_down(lowest.floor)
            floor = ThroughputFloor.model_validate({"power_mode": mode, "precision": precision, "batch": batch,
                                                    "backend": backend, "device": device, "metric": metric,
                                                    "min": float(minimum)})
        else:
            why = f"its spread {lowest.spread:.4g} is as large as its worst figure {lowest.worst:.4g}"
        result.owners.setdefault(owner, []).append(
            Suggestion(owner, floor_key, lowest.board, lowest.worst, lowest.spread, lowest.runs, seen, floor, why))
    for owner in result.owners:
        result.owners[owner].sort(key=_order)
    result.owners = dict(sorted(result.owners.items()))
    return result


def _union(runs: Iterable[RunSeen]) -> tuple[RunSeen, ...]:
    """Each run once (with the newest time it was seen at), oldest first."""
    newest: dict[str, RunSeen] = {}
    for run in runs:
        if run.name not in newest or run.time > newest[run.name].time:
            newest[run.name] = run
    return tuple(sorted(newest.values(), key=lambda r: (r.time, r.name)))


def _order(item: Suggestion) -> tuple:
    mode, precision, batch, backend, device, metric = item.key
    return mode, precision, batch, backend, device or "", FLOOR_METRICS.index(metric)


def suggest_floors(rows: Iterable[Row], last: int, by: Owner = "board") -> dict[str, list[ThroughputFloor]]:
    """Only the floors of `suggest`, per owner: what goes into `Lab.floors`."""
    return suggest(rows, last, by).floors()


_PLAIN = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.:/ -]*$")


def _scalar(value: object) -> str:
    """A YAML scalar that reads back as `value`: plain where it can be, else double-quoted."""
    if isinstance(value, Decimal):
        return format(value, "f")
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise TypeError(f"not a floor's field: {value!r}")
    if isinstance(value, int):
        return str(value)
    if _PLAIN.match(value) and not value.endswith(" ") and ": " not in value and " #" not in value:
        try:
            if yaml.safe_load(f"{{k: {value}}}") == {"k": value}:
                return value
        except yaml.YAMLError:
            pass
    return json.dumps(value)


def _day(run: RunSeen) -> str:
    return f"{run.name} ({run.time.date().isoformat()})"


def _runs_line(runs: Iterable[RunSeen]) -> str:
    ordered = _union(runs)
    if len(ordered) == 1:
        return f"1 passing run, {_day(ordered[0])}"
    return f"{len(ordered)} passing runs, {_day(ordered[0])} to {_day(ordered[-1])}"


def _entry(item: Suggestion) -> str:
    assert item.floor is not None
    floor = item.floor
    fields: dict[str, object] = {"power_mode": floor.power_mode, "precision": floor.precision,
                                 "batch": floor.batch, "backend": floor.backend}
    if floor.device is not None:
        fields["device"] = floor.device
    fields["metric"] = floor.metric
    fields["min"] = round_down(item.worst - item.spread)
    return "{" + ", ".join(f"{name}: {_scalar(value)}" for name, value in fields.items()) + "}"


def render_yaml(suggestions: Suggestions, *, source: str, now: dt.datetime | None = None) -> str:
    """The suggestions as a `floors:` section of lab.yaml: a header saying how they were computed, per owner a
    comment naming the runs they came from, per floor a trailing comment with its worst figure and spread, and the
    floors left out as comments saying why."""
    now = now or dt.datetime.now(dt.timezone.utc)
    per = "board" if suggestions.by == "board" else "profile (the lowest of its boards)"
    lines = [
        f"# Floors suggested by `hil floors suggest` on {now:%Y-%m-%d %H:%M} UTC from the history {source}.",
        f"# Per {per} and configuration: the worst measured figure of the last {suggestions.last} run(s)",
        "# in which its test passed, less their spread (the larger of those figures' range and a run's own",
        f"# spread over its rounds), rounded down to {SIGNIFICANT} significant digits. Where a floor cannot tell",
        "# figures apart (the quantizer; the phase of fps_per_w) the lowest is kept. A floor holds for its",
        "# backend and device only. Review them, then put them under lab.yaml's `floors:` (keyed by board or",
        "# profile name).",
    ]
    if not suggestions.floors():
        lines.append("floors: {}")
    else:
        lines.append("floors:")
    for owner, items in suggestions.owners.items():
        lines.append(f"  # {owner}: {_runs_line(run for item in items for run in item.seen)}")
        kept = [item for item in items if item.floor is not None]
        if kept:
            lines.append(f"  {_scalar(owner)}:")
        for item in items:
            runs = len(item.runs)
            worst = f"worst {item.worst:.4g}" + (f" ({item.board})" if item.board != owner else "")
            about = f"{worst}, spread {item.spread:.3g}, {runs} run{'s' if runs != 1 else ''}"
            if item.floor is not None:
                lines.append(f"    - {_entry(item)}  # {about}")
            else:
                lines.append(f"    # left out: {item.describe()}: {item.left_out} ({about})")
    return "\n".join(lines) + "\n"
