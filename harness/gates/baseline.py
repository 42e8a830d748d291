"""The baseline gate: a run's figures against earlier ones of the same configuration, direction- and noise-aware.

The policy (a checked-in YAML, `suites/regression.yaml`) says per metric which way is better and the
relative change that counts. A figure regressed when it moved the bad way by more than its threshold
and by more than `noise_factor` times the larger spread of the two figures (a figure's spread is the
relative median absolute deviation of the rounds it is the median of): a noisy run cannot fail the gate by its noise,
and a quiet one cannot hide a regression behind a loose threshold. Only measured figures are compared,
and only with the baseline's figure for the same board, profile, power mode, precision, batch, backend,
device, quantizer and phase: a modeled figure is never gated, nor a measured one against a modeled one.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Collection, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from pydantic import BaseModel, ConfigDict, Field

from harness.errors import ConfigError, HarnessError
from harness.results.table import Row, read_results
from harness.results.verdicts import VERDICT, passing_figures
from harness.yamlfile import load_model

if TYPE_CHECKING:  # the history reads runs through the report package, which imports the gates
    from harness.history import History

RESULTS_FILE = "results.csv"

Key = tuple[str, str, str | None, str | None, int | None, str | None, str | None, str | None, str | None, str]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class MetricRule(_Strict):
    better: Literal["higher", "lower"]
    threshold: float = Field(gt=0, description="relative change the bad way that counts as a regression")


class GatePolicy(_Strict):
    noise_factor: float = Field(default=1.0, ge=0)
    metrics: dict[str, MetricRule] = Field(min_length=1)


def load_policy(path: Path) -> GatePolicy:
    return load_model(path, GatePolicy)


#: what makes two figures the same figure of the same configuration
KEY_FIELDS = ("board", "profile", "power_mode", "precision", "batch", "backend", "device", "quantizer", "phase",
              "metric")


def key(row: Row) -> Key:
    return tuple(getattr(row, name) for name in KEY_FIELDS)  # type: ignore[return-value]


@dataclass(frozen=True)
class Comparison:
    """One figure now against the same figure in the baseline."""

    row: Row
    baseline: Row
    rule: MetricRule
    noise_factor: float

    @property
    def change(self) -> float:
        """Relative change, signed: +0.1 is 10 % higher than the baseline."""
        return (self.row.value - self.baseline.value) / abs(self.baseline.value) if self.baseline.value else 0.0

    @property
    def worse_by(self) -> float:
        """How far the change went the bad way (negative when it improved)."""
        return -self.change if self.rule.better == "higher" else self.change

    @property
    def allowed(self) -> float:
        noise = max(self.row.spread or 0.0, self.baseline.spread or 0.0)
        return max(self.rule.threshold, self.noise_factor * noise)

    @property
    def regressed(self) -> bool:
        return self.worse_by > self.allowed

    def describe(self) -> str:
        phase = f" [{self.row.phase}]" if self.row.phase else ""
        return (f"{self.row.metric}{phase}: baseline {self.baseline.value:.4g}, now {self.row.value:.4g} "
                f"({self.change:+.1%}; {self.rule.better} is better, allowed {self.allowed:.1%} worse; "
                f"baseline run {self.baseline.run})")


def compare(baseline: Iterable[Row], current: Iterable[Row], policy: GatePolicy) -> list[Comparison]:
    """Every measured figure of `current` that the policy gates and the baseline has, compared."""
    before = {key(row): row for row in baseline if row.source == "measured" and row.metric in policy.metrics}
    return [Comparison(row, before[key(row)], policy.metrics[row.metric], policy.noise_factor)
            for row in current if row.source == "measured" and key(row) in before]


def _rows(path: Path) -> list[Row]:
    try:
        return read_results(path)
    except (OSError, ValueError, KeyError, HarnessError) as exc:
        raise ConfigError(path, "", f"cannot read it as a results file ({exc})") from None


def results_file(spec: Path) -> Path:
    """A run folder or its results.csv → the results file; ConfigError when there is none."""
    path = spec / RESULTS_FILE if spec.is_dir() else spec
    if not path.is_file():
        raise ConfigError(spec, "", f"no {RESULTS_FILE} there: pass a run folder, its {RESULTS_FILE}, or 'latest'")
    return path


@dataclass(frozen=True)
class Baseline:
    """Per configuration and metric, the figure a run is judged against: the newest earlier one that was measured
    in a test that passed, so each may come from another run (a board that failed last night is judged against the
    night before). `missing` says, per board that has none, why."""

    where: str
    rows: tuple[Row, ...]
    missing: dict[str, str] = field(default_factory=dict)

    @property
    def runs(self) -> list[str]:
        return sorted({row.run for row in self.rows})

    def describe(self) -> str:
        runs = self.runs
        shown = ", ".join(runs[:3]) + (f" and {len(runs) - 3} more" if len(runs) > 3 else "")
        return f"{'run' if len(runs) == 1 else 'runs'} {shown} ({self.where})" if runs else self.where


def first_run(board: str) -> str:
    return f"{board}: first run: this is its baseline"


def resolve_baseline(spec: str, report_dir: Path, *, boards: Collection[str], metrics: Collection[str],
                     exclude: Collection[str] = (), history: History | None = None) -> Baseline:
    """The baseline `spec` names for `boards`: RUN (a run folder or its results.csv, or the name of a run in
    `report_dir` or in the history); `latest`, per configuration the newest passing figure of any earlier run in
    `report_dir` or the history, other than the runs in `exclude`; or a date YYYY-MM-DD, the same measured on or
    before that day. A history that cannot be read is an error (HarnessError), never a silent first run: a board's
    baseline that exists must be used. The throughput gate and the report both ask here, so they judge alike."""
    if spec != "latest" and not is_date(spec):
        where, rows = named_run(spec, report_dir, history, metrics)
        return _newest(where, passing_figures(r for r in rows if r.board in boards), boards,
                       lambda board: f"{board}: no figure of a passed test in {where}: nothing gated")
    until = None if spec == "latest" else (dt.datetime.fromisoformat(spec).replace(tzinfo=dt.timezone.utc)
                                           + dt.timedelta(days=1))
    seen: set[str] = set()
    candidates: list[Row] = []
    known = history.run_names() if history is not None else set()  # every finished run is in it: read it there
    for path in sorted(report_dir.glob(f"*/{RESULTS_FILE}")):
        if path.parent.name in exclude or path.parent.name in known:
            continue
        try:
            rows = [r for r in read_results(path) if r.board in boards]
        except (HarnessError, OSError, ValueError, KeyError):
            continue  # another harness version's or a damaged file: the history holds what it had
        seen.update(r.board for r in rows)
        candidates += passing_figures(rows)
    where = str(report_dir)
    if history is not None:
        where += f" and the history {history.shown}"
        seen |= history.boards_seen(boards, exclude)
        candidates += history.newest_passing(metrics, boards, exclude, until)
    wanted = [r for r in candidates if r.metric in metrics and (until is None or _utc(r.time) < until)]
    return _newest(f"newest passing figures in {where}" + ("" if until is None else f" up to {spec}"), wanted,
                   boards, lambda board: (f"{board}: no earlier run passed its throughput tests; nothing gated, this "
                                          "run is its baseline if it passes") if board in seen else first_run(board))


def named_run(spec: str, report_dir: Path, history: History | None, metrics: Collection[str],
               ) -> tuple[str, list[Row]]:
    """A run by folder, results.csv or name (in `report_dir`, else the history)."""
    for path in (Path(spec), report_dir / spec):
        if path.exists():
            found = results_file(path)
            return str(found), _rows(found)
    if history is not None:
        rows = [r for r in history.run_rows(spec) if r.metric in metrics or r.metric == VERDICT]
        if rows:
            return f"run {spec} in the history {history.shown}", rows
    searched = f"{report_dir}" + (f" nor in the history {history.shown}" if history is not None else "")
    raise ConfigError(f"--baseline {spec}", "", f"no such run folder, and no run of that name in {searched}: pass a "
                                                f"run folder, its {RESULTS_FILE}, a run name, 'latest' or a date "
                                                "(YYYY-MM-DD)")


def _utc(time: str) -> dt.datetime:
    return dt.datetime.fromisoformat(time).astimezone(dt.timezone.utc)


def _newest(where: str, figures: Iterable[Row], boards: Collection[str], absent: Callable[[str], str]) -> Baseline:
    """Per figure the newest; `absent` says why a board has none."""
    newest: dict[Key, Row] = {}
    for row in figures:
        if (known := newest.get(key(row))) is None or _utc(row.time) > _utc(known.time):
            newest[key(row)] = row
    have = {row.board for row in newest.values()}
    return Baseline(where, tuple(sorted(newest.values(), key=key_order)),
                    {board: absent(board) for board in sorted(set(boards) - have)})


def key_order(row: Row) -> tuple[str, ...]:
    return tuple("" if part is None else str(part) for part in key(row))


def is_date(spec: str) -> bool:
    try:
        dt.date.fromisoformat(spec)
    except ValueError:
        return False
    return True


@dataclass(frozen=True)
class BaselineGate:
    """The session's baseline and the policy that judges against it."""

    policy: GatePolicy
    baseline: Baseline

    def check(self, current: Iterable[Row]) -> list[Comparison]:
        return compare(self.baseline.rows, current, self.policy)
