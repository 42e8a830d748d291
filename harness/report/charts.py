"""The report's charts as PNG data URIs (matplotlib, Agg): the HTML file stays self-contained and opens with no
network. Modeled figures are marked as such in the chart's title."""

from __future__ import annotations

import base64
import io
import multiprocessing
import os
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import pandas as pd

Charts = list[tuple[str, str]]
#: fewer charts than this are drawn in this process: starting workers costs more than it saves
PARALLEL_FROM = 8


def draw(jobs: Sequence[tuple[Callable[..., Charts], tuple[Any, ...]]]) -> list[Charts]:
    """Each job's charts, in order, drawn on every core when there are many: matplotlib spends about a third of
    a second of one core per figure, and a farm's report has dozens."""
    if len(jobs) < PARALLEL_FROM or (os.cpu_count() or 1) < 2:
        return [function(*args) for function, args in jobs]
    with ProcessPoolExecutor(os.cpu_count(), mp_context=multiprocessing.get_context("fork")) as pool:
        return list(pool.map(_run, jobs))


def _run(job: tuple[Callable[..., Charts], tuple[Any, ...]]) -> Charts:
    function, args = job
    return function(*args)


def _uri(figure: plt.Figure) -> str:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=80)
    plt.close(figure)
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()


def _label(row: pd.Series) -> str:
    return f"{row['power_mode']} {row['precision']} b{row['batch']}"


def device(table: pd.DataFrame, board: str, modeled: list[str]) -> Charts:
    """One figure per device: raw and pipeline FPS per configuration, FPS against power (the power-mode sweep),
    and the raw engine's latency distribution per configuration (p50 and p99)."""
    if table.empty or "raw FPS" not in table:
        return []
    labels = [_label(row) for _, row in table.iterrows()]
    x = list(range(len(table)))
    figure, (bars, sweep, spread) = plt.subplots(1, 3, figsize=(13, 3.6), gridspec_kw={"width_ratios": [3, 1.3, 3]})
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
    figure, axes = plt.subplots(len(cases), 1, figsize=(9, 1.6 * len(cases)), squeeze=False)
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
    figure, (left, right) = plt.subplots(1, 2, figsize=(10, max(2.5, 0.18 * len(shown) + 0.8)))
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


def trend_of(label: str, boards: dict[str, pd.DataFrame], baseline_at: pd.Timestamp | None) -> Charts:
    """A panel per device: each configuration over the runs (x: days before the newest run, numeric: date axes
    cost seconds per panel), the baseline dashed."""
    if not boards:
        return []
    newest = max(table.index.max() for table in boards.values())
    columns = min(4, len(boards))
    rows = -(-len(boards) // columns)
    figure, axes = plt.subplots(rows, columns, figsize=(3.2 * columns, 2.1 * rows), squeeze=False, sharex=True)
    figure.subplots_adjust(left=0.05, right=0.99, bottom=0.3 / rows, top=1 - 0.12 / rows, hspace=0.35, wspace=0.25)
    for ax, (board, table) in zip(axes.flat, boards.items(), strict=False):
        days = (table.index - newest).total_seconds() / 86400
        ax.plot(days, table.to_numpy(), lw=0.8)
        if baseline_at is not None:
            ax.axvline((baseline_at - newest).total_seconds() / 86400, color="black", ls="--", lw=1)
        ax.text(0.02, 0.97, board, transform=ax.transAxes, fontsize=7, va="top")  # set_title costs a layout pass
        ax.tick_params(labelsize=6)
        ax.locator_params(nbins=3)
    for ax in list(axes.flat)[len(boards):]:
        ax.set_visible(False)
    for ax in axes[-1]:
        ax.set_xlabel("days before the newest run", fontsize=7)
    return [(f"{label} over the history's runs, per device (one line per configuration"
             + ("; dashed: the baseline)" if baseline_at is not None else ")"), _uri(figure))]
