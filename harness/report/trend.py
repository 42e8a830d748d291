"""Trend over the history: per device and metric, each configuration's figure run after run, as its change against
the baseline run. Works on the history's DataFrame, so a year of nightly runs is one groupby."""

from __future__ import annotations

from collections.abc import Iterable

import pandas as pd

from harness.gates import GatePolicy

#: (metric, phase, label) drawn per device
METRICS = (("raw_fps", "raw", "raw FPS"), ("fps_per_w", "pipeline", "FPS/W"), ("latency_p50", "raw", "p50 ms"))


WANTED = [(metric, phase) for metric, phase, _ in METRICS]


def directions(policy: GatePolicy) -> dict[str, str]:
    """Label → which way is better, from the gate policy: a trend colours change the way the gate judges it."""
    return {label: policy.metrics[metric].better for metric, _, label in METRICS if metric in policy.metrics}


def series(figures: pd.DataFrame) -> dict[tuple[str, str], pd.DataFrame]:
    """(board, label) → one column per configuration, indexed by the run's end, median per run. `figures` is the
    history's `figures(boards, WANTED)`: the rows of those metrics with their configuration and run end time."""
    out: dict[tuple[str, str], pd.DataFrame] = {}
    if figures.empty:
        return out
    wide = figures.groupby(["board", "metric", "ended", "config"], observed=True)["value"].median().unstack("config")
    modeled = set(figures.loc[figures["source"] == "modeled", ["board", "metric"]].itertuples(index=False, name=None))
    labels = {metric: label for metric, _, label in METRICS}
    for (board, metric), table in wide.groupby(level=["board", "metric"], observed=True):
        label = labels[str(metric)] + (" (modeled)" if (board, metric) in modeled else "")
        out[(str(board), label)] = table.droplevel(["board", "metric"]).dropna(axis=1, how="all").sort_index()
    return dict(sorted(out.items(), key=lambda item: (list(labels.values()).index(item[0][1].split(" (")[0]),
                                                      item[0][0])))


def run_count(tables: Iterable[pd.DataFrame]) -> int:
    """How many runs `series` tables hold between them (a row per run, by its end): a trend needs two."""
    return len(set().union(*(table.index for table in tables)))


def change(boards: dict[str, pd.DataFrame], baseline_at: pd.Timestamp | None,
           better: str | None) -> tuple[pd.DataFrame, bool]:
    """Runs x (board, configuration): each figure's change in % against the baseline run (the last run at or
    before `baseline_at`), signed so that + is better when the policy says which way is (else + is higher);
    against each configuration's median when the history has no run that early. The bool: against the baseline."""
    wide = pd.concat(boards, axis=1).sort_index()
    before = wide[wide.index <= baseline_at] if baseline_at is not None else wide.iloc[:0]
    reference = before.ffill().iloc[-1] if len(before) else wide.median()
    relative = 100 * (wide - reference) / reference.abs()
    return (-relative if better == "lower" else relative), bool(len(before))
