"""What a report says, computed from runs (pandas): per device its provenance, verdicts, throughput and
resilience tables; across devices one comparison table; and the regression gate against a baseline, which is
the throughput suite's own comparison (`harness.gates.compare`), so both judge alike."""

from __future__ import annotations

from dataclasses import dataclass, field

import pandas as pd

from harness.gates import GatePolicy, compare
from harness.gates.baseline import Baseline, Comparison
from harness.report import trend
from harness.report.runs import RunData
from harness.results import VERDICT

#: (column, phase, metric) of the throughput table: each figure says which span it covers
THROUGHPUT = (("raw FPS", "raw", "raw_fps"), ("pipeline FPS", "pipeline", "pipeline_fps"),
              ("p50 ms", "raw", "latency_p50"), ("p99 ms", "raw", "latency_p99"),
              ("power W", "pipeline", "power_mean"), ("J/frame", "pipeline", "energy_per_frame"),
              ("FPS/W", "pipeline", "fps_per_w"), ("trtexec FPS", "trtexec", "trtexec_fps"),
              ("raw/trtexec", "trtexec", "raw_over_trtexec"))
RESILIENCE = (("expected", "messages_expected"), ("delivered", "messages_delivered"),
              ("missing", "messages_missing"), ("duplicates", "messages_duplicates"),
              ("dropped", "messages_dropped_overflow"), ("drain s", "drain_s"),
              ("offline/online FPS", "offline_fps_ratio"))
CORRECTNESS = (("golden match", "golden_match"), ("mAP@0.5", "map50"))
CONFIG = ["power_mode", "precision", "batch"]


@dataclass
class Device:
    board: str
    profile: str
    runs: list[str]
    provenance: dict[str, str]
    verdicts: dict[str, str]
    throughput: pd.DataFrame  # one row per configuration; a "modeled" set names the modeled columns
    modeled_columns: list[str]
    resilience: pd.DataFrame
    correctness: pd.DataFrame
    timelines: dict[str, pd.DataFrame] = field(default_factory=dict)


@dataclass
class Report:
    runs: list[str]
    devices: list[Device]
    comparison: pd.DataFrame
    baseline: str | None = None
    compared: list[Comparison] = field(default_factory=list)
    #: per board of the run without a baseline figure, why: its first run, or no earlier run of it passed
    unbaselined: dict[str, str] = field(default_factory=dict)
    #: (board, metric label) → configurations over the history's runs; when the baseline ran
    trends: dict[tuple[str, str], pd.DataFrame] = field(default_factory=dict)
    baseline_at: pd.Timestamp | None = None
    #: trend label (without " (modeled)") → "higher" or "lower" is better, from the gate policy
    trend_better: dict[str, str] = field(default_factory=dict)

    @property
    def regressions(self) -> list[Comparison]:
        return [c for c in self.compared if c.regressed]

    @property
    def failed_tests(self) -> dict[str, list[str]]:
        """Board → its tests that failed or errored."""
        return {d.board: failed for d in self.devices
                if (failed := [t for t, v in d.verdicts.items() if v in ("failed", "error")])}

    @property
    def passed(self) -> bool:
        return not self.regressions and not self.failed_tests

    @property
    def modeled(self) -> bool:
        return any(d.modeled_columns for d in self.devices)


def build(runs: list[RunData], policy: GatePolicy, baseline: Baseline | None = None,
          history: pd.DataFrame | None = None) -> Report:
    """The report of `runs`, gated against `baseline`, with trends from `history` (its `figures` of the runs'
    boards, see `trend.WANTED`). Each table is one pivot over all boards, split per board after."""
    data = pd.concat([run.frame() for run in runs], ignore_index=True) if runs else pd.DataFrame()
    boards = [str(b) for b in sorted(data["board"].unique())]
    throughput = _wide(data, [(c, p, m) for c, p, m in THROUGHPUT], ["board", *CONFIG])
    modeled = _modeled(data)
    resilience = _wide(data, [(c, None, m) for c, m in RESILIENCE], ["board", "test", "precision"])
    correctness = _wide(data, [(c, None, m) for c, m in CORRECTNESS], ["board", "test", "precision"])
    devices = [_device(board, data[data["board"] == board], runs, _part(throughput, board), modeled.get(board, []),
                       _part(resilience, board), _part(correctness, board)) for board in boards]
    report = Report([run.name for run in runs], devices, _comparison(data), trend_better=trend.directions(policy))
    if baseline is not None:
        report.baseline = baseline.describe()
        report.compared = compare(baseline.rows, [row for run in runs for row in run.rows], policy)
        report.unbaselined = {board: why for board, why in baseline.missing.items() if board in boards}
        report.baseline_at = max(pd.Timestamp(row.time) for row in baseline.rows) if baseline.rows else None
    if history is not None:
        report.trends = trend.series(history)
    return report


def _device(board: str, data: pd.DataFrame, runs: list[RunData], throughput: pd.DataFrame, modeled: list[str],
            resilience: pd.DataFrame, correctness: pd.DataFrame) -> Device:
    mine = [run for run in runs if any(row.board == board for row in run.rows)]
    provenance: dict[str, str] = {}
    verdicts: dict[str, str] = {}
    timelines: dict[str, pd.DataFrame] = {}
    for run in mine:
        provenance.update(run.suite(board).properties)
        # a test's own verdict row where its JUnit file has no word on it (a run without --junitxml, or killed)
        verdicts.update({row.test: "passed" if row.value == 1.0 else "failed" for row in run.rows
                         if row.board == board and row.metric == VERDICT})
        verdicts.update(run.suite(board).verdicts)
        timelines.update(run.timelines)
    return Device(board, str(data["profile"].iloc[0]), [run.name for run in mine], provenance, verdicts, throughput,
                  modeled, resilience, correctness, timelines)


def _wide(data: pd.DataFrame, wanted: list[tuple[str, str | None, str]], index: list[str]) -> pd.DataFrame:
    """(column, phase or None for none, metric) → one column each, one row per `index` key, medians."""
    if data.empty:
        return pd.DataFrame()
    labels = {(m, p): c for c, p, m in wanted}
    phases = data["phase"].astype(object).where(data["phase"].notna(), None)
    column = pd.Series([labels.get((m, p)) for m, p in zip(data["metric"], phases, strict=True)], index=data.index)
    rows = data.assign(column=column)[column.notna()]
    if rows.empty:
        return pd.DataFrame()
    table = rows.groupby([*index, "column"], observed=True, dropna=False)["value"].median().unstack("column")
    table = table[[c for c, _, _ in wanted if c in table.columns]].reset_index()
    table.columns.name = None
    return table


def _modeled(data: pd.DataFrame) -> dict[str, list[str]]:
    """Per board, the throughput table's columns that hold a modeled figure."""
    out: dict[str, list[str]] = {}
    modeled = data[data["source"] == "modeled"]
    for column, phase, metric in THROUGHPUT:
        hit = modeled[(modeled["metric"] == metric) & (modeled["phase"] == phase)]
        for board in hit["board"].unique():
            out.setdefault(str(board), []).append(column)
    return out


def _part(table: pd.DataFrame, board: str) -> pd.DataFrame:
    if table.empty:
        return table
    return table[table["board"] == board].drop(columns="board").reset_index(drop=True)


def _comparison(data: pd.DataFrame) -> pd.DataFrame:
    """Across devices and modes: FPS/W, raw FPS, p50 latency and mean power per configuration."""
    if data.empty:
        return pd.DataFrame()
    wanted = {("fps_per_w", "pipeline"): "FPS/W", ("raw_fps", "raw"): "raw FPS", ("latency_p50", "raw"): "p50 ms",
              ("power_mean", "pipeline"): "power W"}
    rows = data[[(m, p) in wanted for m, p in zip(data["metric"], data["phase"], strict=True)]]
    if rows.empty:
        return pd.DataFrame()
    rows = rows.assign(column=[wanted[(m, p)] for m, p in zip(rows["metric"], rows["phase"], strict=True)])
    table = rows.pivot_table(index=["board", "profile", *CONFIG], columns="column", values="value",
                             aggfunc="median", observed=True).reset_index()
    table.columns.name = None
    return table.sort_values("FPS/W", ascending=False) if "FPS/W" in table else table
