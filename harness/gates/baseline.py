"""The baseline gate: a run's figures against a stored run of the same configuration, direction- and noise-aware.

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
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from harness.errors import ConfigError, HarnessError
from harness.results.table import Row, read_results
from harness.yamlfile import load_model

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


def key(row: Row) -> Key:
    return (row.board, row.profile, row.power_mode, row.precision, row.batch, row.backend, row.device,
            row.quantizer, row.phase, row.metric)


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
                f"({self.change:+.1%}; {self.rule.better} is better, allowed {self.allowed:.1%} worse)")


def compare(baseline: Iterable[Row], current: Iterable[Row], policy: GatePolicy) -> list[Comparison]:
    """Every measured figure of `current` that the policy gates and the baseline has, compared."""
    before = {key(row): row for row in baseline if row.source == "measured" and row.metric in policy.metrics}
    return [Comparison(row, before[key(row)], policy.metrics[row.metric], policy.noise_factor)
            for row in current if row.source == "measured" and key(row) in before]


def _rows(path: Path) -> list[Row]:
    try:
        return read_results(path)
    except (OSError, ValueError, KeyError) as exc:
        raise ConfigError(path, "", f"cannot read it as a results file ({exc})") from None


def results_file(spec: Path) -> Path:
    """A run folder or its results.csv → the results file; ConfigError when there is none."""
    path = spec / RESULTS_FILE if spec.is_dir() else spec
    if not path.is_file():
        raise ConfigError(spec, "", f"no {RESULTS_FILE} there: pass a run folder, its {RESULTS_FILE}, or 'latest'")
    return path


def resolve_baseline(spec: str, report_dir: Path, *, boards: Collection[str], exclude: Collection[str] = (),
                     suite: str | None = None) -> tuple[str, list[Row]] | None:
    """(where, rows) of the baseline `spec` names: a run folder or its results.csv; `latest`, the newest run in
    `report_dir` (by its last row of `boards`, in `suite` when given) other than the runs named in `exclude`; or a
    date YYYY-MM-DD, the newest such run measured on or before that day. None when `latest` or a date finds none.
    The throughput gate and the report both ask here, so they compare with the same run."""
    if spec != "latest" and not is_date(spec):
        path = results_file(Path(spec))
        return str(path), _rows(path)
    until = None if spec == "latest" else dt.datetime.fromisoformat(spec).replace(tzinfo=dt.timezone.utc) + \
        dt.timedelta(days=1)
    newest: tuple[str, str, list[Row]] | None = None
    for path in sorted(report_dir.glob(f"*/{RESULTS_FILE}")):
        if path.parent.name in exclude:
            continue
        try:
            rows = read_results(path)
        except (HarnessError, OSError, ValueError, KeyError):
            continue  # another harness version's or a damaged file is no baseline
        times = [r.time for r in rows if r.board in boards and (suite is None or r.suite == suite)]
        if not times or (until is not None and dt.datetime.fromisoformat(max(times)) >= until):
            continue
        if newest is None or max(times) > newest[0]:
            newest = (max(times), str(path), rows)
    return None if newest is None else (newest[1], newest[2])


def is_date(spec: str) -> bool:
    try:
        dt.date.fromisoformat(spec)
    except ValueError:
        return False
    return True


@dataclass(frozen=True)
class BaselineGate:
    """The session's baseline (rows of one earlier run) and the policy that judges against it."""

    policy: GatePolicy
    source: str
    rows: Sequence[Row]

    def check(self, current: Iterable[Row]) -> list[Comparison]:
        return compare(self.rows, current, self.policy)
