"""The report's charts as SVG data URIs (matplotlib): the HTML file stays self-contained and opens with no
network. Modeled figures are marked as such in the chart's title."""

from __future__ import annotations

import base64
import io
import multiprocessing
import os
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from typing import Any

import matplotlib
import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.font_manager import FontProperties
from matplotlib.textpath import text_to_path

from harness.report import trend

Charts = list[tuple[str, str]]
Job = tuple[Callable[..., "Charts"], tuple[Any, ...]]
#: fewer charts than this are drawn in this process: starting workers costs more than it saves
PARALLEL_FROM = 8
#: a heat map's y tick and its gap to the label, beside the label's own width in the left margin
TICK_IN = (matplotlib.rcParams["ytick.major.size"] + matplotlib.rcParams["ytick.major.pad"]) / 72
#: room for the colour bar and its tick labels right of the heat map
RIGHT_IN = 0.77
#: the least width a heat map and its colour bar keep beside a long label: the figure widens instead
PLOT_IN = 7.5
#: a heat map's margins below (dates, the runs' label) and above
BOTTOM_IN, TOP_IN = 0.6, 0.15
#: what a browser's text may take beyond matplotlib's measure (hinting, a fallback font)
SLACK_IN = 0.1


class Painter:
    """Charts drawn on every core while the caller goes on: matplotlib spends a quarter of a second of one core
    per figure and a farm's report has dozens, so the device charts are drawn while the history is read.
    `start` takes jobs and returns a handle; `finish` gives their charts in order."""

    def __init__(self, expected: int) -> None:
        cores = os.cpu_count() or 1
        self._pool = (ProcessPoolExecutor(cores, mp_context=multiprocessing.get_context("fork"))
                      if expected >= PARALLEL_FROM and cores >= 2 else None)

    def start(self, jobs: Sequence[Job]) -> list[Future[Charts]] | list[Charts]:
        if self._pool is None:
            return [function(*args) for function, args in jobs]
        return [self._pool.submit(function, *args) for function, args in jobs]

    @staticmethod
    def finish(started: list[Future[Charts]] | list[Charts]) -> list[Charts]:
        return [item.result() if isinstance(item, Future) else item for item in started]

    def __enter__(self) -> Painter:
        return self

    def __exit__(self, *exc: object) -> None:
        if self._pool is not None:
            self._pool.shutdown(cancel_futures=True)


def _figure(*grid: int, figsize: tuple[float, float], **kwargs: Any) -> tuple[Figure, Any]:
    """A figure and its axes without pyplot: no global figure registry to close, and pyplot is not imported."""
    figure = Figure(figsize=figsize)
    return figure, figure.subplots(*grid, **kwargs)


def _uri(figure: Figure) -> str:
    """SVG with its text as text (the browser sets it, and it stays searchable): a third cheaper to write than a
    PNG of the same figure, and sharp at any zoom; a heat map goes in as the embedded image it is."""
    buffer = io.BytesIO()
    with matplotlib.rc_context({"svg.fonttype": "none", "svg.hashsalt": "jetson-hil"}):
        figure.savefig(buffer, format="svg")
    return "data:image/svg+xml;base64," + base64.b64encode(buffer.getvalue()).decode()


def _label(row: pd.Series) -> str:
    return f"{row['power_mode']} {row['precision']} b{row['batch']}"


def device(table: pd.DataFrame, board: str, modeled: list[str]) -> Charts:
    """One figure per device: raw and pipeline FPS per configuration, FPS against power (the power-mode sweep),
    and the raw engine's latency distribution per configuration (p50 and p99)."""
    if table.empty or "raw FPS" not in table:
        return []
    labels = [_label(row) for _, row in table.iterrows()]
    x = list(range(len(table)))
    figure, (bars, sweep, spread) = _figure(1, 3, figsize=(13, 3.6), gridspec_kw={"width_ratios": [3, 1.3, 3]})
    figure.subplots_adjust(left=0.05, right=0.99, bottom=0.33, top=0.97, wspace=0.22)
    bars.bar([i - 0.2 for i in x], table["raw FPS"], width=0.4, label="raw engine")
    if "pipeline FPS" in table:
        bars.bar([i + 0.2 for i in x], table["pipeline FPS"], width=0.4, label="pipeline")
    bars.set_xticks(x, labels, rotation=90, fontsize=6)
    bars.set_ylabel("FPS (measured)")
    bars.legend(fontsize=7)
    if "power W" in table and "pipeline FPS" in table:
        sweep.scatter(table["power W"], table["pipeline FPS"], s=12)
        sweep.set_xlabel("power W (modeled)" if "power W" in modeled else "power W (measured)")
        sweep.set_ylabel("pipeline FPS")
    if "p50 ms" in table and "p99 ms" in table:
        spread.vlines(x, table["p50 ms"], table["p99 ms"], lw=3, alpha=0.6, label="p50 to p99")
        spread.scatter(x, table["p50 ms"], s=10, label="p50")
        spread.set_xticks(x, [str(i + 1) for i in x], fontsize=6)  # the same order as the bars beside it
        spread.set_xlabel("configuration (as on the left)", fontsize=7)
        spread.set_ylabel("raw latency ms (measured)")
        spread.legend(fontsize=7)
    return [(f"{board}: FPS per configuration; FPS against power (power-mode sweep); latency distribution",
             _uri(figure))]


def timelines(cases: dict[str, pd.DataFrame], board: str) -> Charts:
    """The resilience cases one above the other: messages received per second and outbox depth, outages
    shaded (red: down, orange: degraded)."""
    if not cases:
        return []
    figure, axes = _figure(len(cases), 1, figsize=(9, 1.6 * len(cases)), squeeze=False)
    figure.subplots_adjust(left=0.06, right=0.99, bottom=0.5 / len(cases), top=0.98, hspace=0.45)
    for ax, (name, data) in zip(axes[:, 0], cases.items(), strict=True):
        for second, link in zip(data["second"], data["link"], strict=True):
            if link in ("down", "degraded"):
                ax.axvspan(second, second + 1, color="red" if link == "down" else "orange", alpha=0.15, lw=0)
        ax.plot(data["second"], data["received"], label="received / s", lw=1)
        ax.plot(data["second"], data["outbox_depth"], label="outbox depth", lw=1)
        ax.text(0.01, 0.95, name, transform=ax.transAxes, fontsize=7, va="top")
        ax.tick_params(labelsize=7)
    axes[0, 0].legend(fontsize=7)
    axes[-1, 0].set_xlabel("s (shaded: link down or degraded)")
    return [(f"{board}: resilience timelines", _uri(figure))]


def comparison(table: pd.DataFrame, modeled: bool, most: int = 40) -> Charts:
    """FPS/W and p50 latency side by side across devices and modes: the `most` best configurations by FPS/W (the
    table lists them all)."""
    if table.empty or "FPS/W" not in table:
        return []
    shown = table.nlargest(most, "FPS/W").iloc[::-1]
    labels = [f"{row['board']} {_label(row)}" for _, row in shown.iterrows()]
    figure, (left, right) = _figure(1, 2, figsize=(10, max(2.5, 0.18 * len(shown) + 0.8)))
    figure.subplots_adjust(left=0.3, right=0.98, bottom=0.6 / max(2.5, 0.18 * len(shown) + 0.8) + 0.05, top=0.98,
                           wspace=0.05)
    left.barh(labels, shown["FPS/W"])
    left.set_xlabel("FPS/W" + (" (modeled power)" if modeled else ""))
    left.tick_params(axis="y", labelsize=6)
    if "p50 ms" in shown:
        right.barh(labels, shown["p50 ms"])
    right.set_xlabel("raw p50 latency, ms (measured)")
    right.set_yticks([])
    title = "Across devices and modes" + (f": the {most} best of {len(table)} by FPS/W" if len(table) > most else "")
    return [(title, _uri(figure))]


def trend_of(label: str, boards: dict[str, pd.DataFrame], baseline_at: pd.Timestamp | None,
             better: str | None) -> Charts:
    """One heat map per metric: a row per device and configuration, a column per run (oldest left), coloured by
    the change against the baseline run (against the row's median when the baseline is not in the history),
    green better and red worse by the gate policy's direction. A farm's year is one image, where a panel of lines
    per device took seconds to draw and could not be read. None from fewer than two runs: one run is no trend,
    and the page says so in a line instead (report.html.j2)."""
    if trend.run_count(boards.values()) < 2:
        return []
    wide, against_baseline = trend.change(boards, baseline_at, better)
    values = wide.to_numpy(dtype=float).T
    rows, runs = values.shape
    owners = wide.columns.get_level_values(0)
    starts = [i for i in range(rows) if i == 0 or owners[i] != owners[i - 1]]
    ticks, names, size = _row_labels(wide.columns, starts)
    against = "the baseline run" if against_baseline else "the row's median"
    scale = f"% {'better (+) / worse (-)' if better else 'above / below'} than {against}"
    height = max(min(12.0, 1.4 + 0.14 * rows if rows <= 40 else 2.2 + 0.018 * rows),  # the bar's label fits too
                 _width_in([scale], 7) + BOTTOM_IN + TOP_IN + SLACK_IN)
    left = _width_in(names, size) + TICK_IN + SLACK_IN
    width = max(11.0, left + PLOT_IN + RIGHT_IN)
    figure, ax = _figure(figsize=(width, height))
    figure.subplots_adjust(left=left / width, right=1 - RIGHT_IN / width, bottom=BOTTOM_IN / height,
                           top=1 - TOP_IN / height)
    cmap = matplotlib.colormaps["RdYlGn" if better else "coolwarm"].with_extremes(bad="lightgrey")
    image = ax.imshow(np.ma.masked_invalid(values), aspect="auto", interpolation="nearest", cmap=cmap,
                      vmin=-30, vmax=30)
    for start in starts[1:]:
        ax.axhline(start - 0.5, color="black", lw=0.6)
    ax.set_yticks(ticks, names, fontsize=size)
    dated = sorted({round(i) for i in np.linspace(0, runs - 1, min(runs, 6))})
    ax.set_xticks(dated, [f"{wide.index[i]:%Y-%m-%d}" for i in dated], fontsize=7)
    ax.set_xlabel(f"{runs} runs, oldest left")
    if against_baseline:
        ax.axvline(np.flatnonzero(wide.index <= baseline_at)[-1], color="black", ls="--", lw=1)
    bar = figure.colorbar(image, ax=ax, fraction=0.03, pad=0.01, extend="both")
    bar.set_label(scale, fontsize=7)
    bar.ax.tick_params(labelsize=6)
    return [(f"{label} over the history's runs: change per device and configuration against {against}"
             + ("; dashed: the baseline run" if against_baseline else ""), _uri(figure))]


def _row_labels(columns: pd.MultiIndex, starts: list[int]) -> tuple[Sequence[float], list[str], float]:
    """Where the heat map's row labels go, what they say and their font size: "board config" per row up to 40
    rows; past that one board name per group of rows (starting at `starts`), in its middle, to stay legible."""
    if len(columns) <= 40:
        return list(range(len(columns))), [f"{board} {config}" for board, config in columns], 6
    ends = [*starts[1:], len(columns)]
    return ([(a + b - 1) / 2 for a, b in zip(starts, ends, strict=True)], [str(columns[a][0]) for a in starts], 7)


def _width_in(texts: list[str], size: float) -> float:
    """The widest text's width in inches, as matplotlib lays it out in its font (DejaVu Sans, which the SVG names
    and the browser sets): the margins follow the longest name, be it `hil virtual lab`'s
    virtual-agx-xavier-arm64-4 or a lab.yaml's of any length."""
    font = FontProperties(size=size)
    return max(text_to_path.get_text_width_height_descent(text, font, ismath=False)[0] for text in texts) / 72
