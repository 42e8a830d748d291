"""Trend over the history: per device and metric, each configuration's figure run after run, with the baseline
run marked. Works on the history's DataFrame, so a year of nightly runs is one groupby."""

from __future__ import annotations

import pandas as pd

#: (metric, phase, label) drawn per device
METRICS = (("raw_fps", "raw", "raw FPS"), ("fps_per_w", "pipeline", "FPS/W"), ("latency_p50", "raw", "p50 ms"))


WANTED = [(metric, phase) for metric, phase, _ in METRICS]


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
