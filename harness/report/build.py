"""What a report says, computed from runs (pandas): per device its provenance, verdicts, throughput and
resilience tables; across devices one comparison table; and the regression gate against a baseline, which is
the throughput suite's own comparison (`harness.gates.compare`), so both judge alike."""

from __future__ import annotations

from dataclasses import dataclass, field

import pandas as pd

from harness.gates import GatePolicy, compare
from harness.gates.baseline import Comparison
from harness.report import trend
from harness.report.runs import RunData

#: (column, phase, metric) of the throughput table: each figure says which span it covers
THROUGHPUT = (("raw FPS", "raw", "raw_fps"), ("pipeline FPS", "pipeline", "pipeline_fps"),
              ("p50 ms", "raw", "latency_p50"), ("p99 ms", "raw", "latency_p99"),
              ("power W", "pipeline", "power_mean"), ("J/frame", "pipeline", "energy_per_frame"),
              ("FPS/W", "pipeline", "fps_per_w"))
RESILIENCE = (("expected", "messages_expected"), ("delivered", "messages_delivered"),
              ("missing", "messages_missing"), ("duplicates", "messages_duplicates"),
              ("dropped", "messages_dropped_overflow"), ("drain s", "drain_s"),
              ("offline/online FPS", "offline_fps_ratio"))
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
    #: (board, metric label) → configurations over the history's runs; when the baseline ran
    trends: dict[tuple[str, str], pd.DataFrame] = field(default_factory=dict)
    baseline_at: pd.Timestamp | None = None

    @property
    def regressions(self) -> list[Comparison]:
        return [c for c in self.compared if c.regressed]

    @property
    def modeled(self) -> bool:
        return any(d.modeled_columns for d in self.devices)


def build(runs: list[RunData], policy: GatePolicy, baseline: tuple[str, RunData] | None = None,
          history: pd.DataFrame | None = None) -> Report:
    """The report of `runs`, gated against `baseline`, with trends from `history` (its `figures` of the runs'
    boards, see `trend.WANTED`)."""
    data = pd.concat([run.frame() for run in runs], ignore_index=True) if runs else pd.DataFrame()
    boards = sorted(data["board"].unique())
    devices = [_device(board, data[data["board"] == board], runs) for board in boards]
    report = Report([run.name for run in runs], devices, _comparison(data))
    if baseline is not None:
        report.baseline = baseline[0]
        report.compared = compare(baseline[1].rows, [row for run in runs for row in run.rows], policy)
        report.baseline_at = max(pd.Timestamp(row.time) for row in baseline[1].rows) if baseline[1].rows else None
    if history is not None:
        report.trends = trend.series(history)
    return report


def _device(board: str, data: pd.DataFrame, runs: list[RunData]) -> Device:
    mine = [run for run in runs if any(row.board == board for row in run.rows)]
    provenance: dict[str, str] = {}
    verdicts: dict[str, str] = {}
    timelines: dict[str, pd.DataFrame] = {}
    for run in mine:
        provenance.update(run.properties)
        verdicts.update(run.verdicts)
        timelines.update(run.timelines)
    throughput, modeled = _throughput(data[data["suite"] == "test_throughput"])
    return Device(board, str(data["profile"].iloc[0]), [run.name for run in mine], provenance, verdicts, throughput,
                  modeled, _per_test(data[data["suite"] == "test_resilience"], RESILIENCE),
                  _per_test(data[data["suite"] == "test_correctness"],
                            (("golden match", "golden_match"), ("mAP@0.5", "map50"))), timelines)


def _throughput(data: pd.DataFrame) -> tuple[pd.DataFrame, list[str]]:
    table = pd.DataFrame(columns=[*CONFIG, *(c for c, _, _ in THROUGHPUT)])
    modeled: list[str] = []
    if data.empty:
        return table, modeled
    keyed = data.assign(batch=data["batch"].astype("Int64"))
    for column, phase, metric in THROUGHPUT:
        rows = keyed[(keyed["metric"] == metric) & (keyed["phase"] == phase)]
        if rows.empty:
            continue
        if (rows["source"] == "modeled").any():
            modeled.append(column)
        values = rows.groupby(CONFIG, observed=True)["value"].median().rename(column)
        table = values.to_frame() if table.empty else table.join(values, how="outer")
    return table.reset_index() if not table.empty else table, modeled


def _per_test(data: pd.DataFrame, metrics: tuple[tuple[str, str], ...]) -> pd.DataFrame:
    if data.empty:
        return pd.DataFrame()
    wide = data[data["metric"].isin([m for _, m in metrics]) & data["phase"].isna()]
    if wide.empty:
        return pd.DataFrame()
    columns = {m: c for c, m in metrics}
    pivot = wide.pivot_table(index=["test", "precision"], columns="metric", values="value", aggfunc="median",
                             observed=True)
    table = pivot.rename(columns=columns)[[c for c, m in metrics if m in pivot.columns]].reset_index()
    table.columns.name = None
    return table


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
