"""Trend over the history: per device and metric, each configuration's figure run after run, with the baseline
run marked. Works on the history's DataFrame, so a year of nightly runs is one groupby."""

from __future__ import annotations

import pandas as pd

#: (metric, phase, label) drawn per device
METRICS = (("raw_fps", "raw", "raw FPS"), ("fps_per_w", "pipeline", "FPS/W"), ("latency_p50", "raw", "p50 ms"))


WANTED = [(metric, phase) for metric, phase, _ in METRICS]


def series(figures: pd.DataFrame) -> dict[tuple[str, str], pd.DataFrame]:
    """(board, label) → one column per configuration, indexed by the run's end, median per run. `figures` is the
    history's `figures(boards, WANTED)`: the rows of those metrics, each with its run's end time."""
    out: dict[tuple[str, str], pd.DataFrame] = {}
    if figures.empty:
        return out
    figures = figures.assign(config=figures["power_mode"].astype(str) + " " + figures["precision"].astype(str)
                             + " b" + figures["batch"].astype(str))
    for metric, phase, label in METRICS:
        rows = figures[(figures["metric"] == metric) & (figures["phase"] == phase)]
        for board, group in rows.groupby("board", observed=True):
            table = group.pivot_table(index="ended", columns="config", values="value", aggfunc="median").sort_index()
            out[(str(board), label + (" (modeled)" if (group["source"] == "modeled").any() else ""))] = table
    return out
