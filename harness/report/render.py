"""A report written three ways: one self-contained HTML file (charts embedded), Markdown for a CI job summary,
and JSON for tools. Modeled figures are marked in each."""

from __future__ import annotations

import contextlib
import json
import math
from pathlib import Path
from typing import Any

import pandas as pd
from jinja2 import Environment, PackageLoader, select_autoescape

from harness.gates.baseline import Comparison
from harness.report import charts, trend
from harness.report.build import Device, Report
from harness.results.files import replace_atomically

NAMES = ("report.html", "report.md", "report.json")


def _html_table(table: pd.DataFrame, modeled: list[str] | None = None) -> str:
    if table.empty:
        return ""
    shown = table.copy()
    for column in modeled or []:
        if column in shown:
            shown[column] = [f'<span class="modeled">{v:.4g}</span>' if pd.notna(v) else "" for v in shown[column]]
    return shown.to_html(index=False, escape=False, float_format=lambda v: f"{v:.4g}", na_rep="")


def _md_table(table: pd.DataFrame, modeled: list[str] | None = None) -> str:
    if table.empty:
        return "_none_\n"
    columns = list(table.columns)
    head = "| " + " | ".join(f"{c} (modeled)" if c in (modeled or []) else str(c) for c in columns) + " |"
    lines = [head, "|" + "---|" * len(columns)]
    for _, row in table.iterrows():
        lines.append("| " + " | ".join(_cell(row[c]) for c in columns) + " |")
    return "\n".join(lines) + "\n"


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return "" if math.isnan(value) else f"{value:.4g}"
    return "" if value is None or value is pd.NA else str(value)


def device_jobs(report: Report) -> list[charts.Job]:
    """The charts that need no history: across devices, then per device its figure and its resilience timelines."""
    return [(charts.comparison, (report.comparison, report.modeled)),
            *((charts.device, (d.throughput, d.board, d.modeled_columns)) for d in report.devices),
            *((charts.timelines, (d.timelines, d.board)) for d in report.devices)]


def trend_jobs(report: Report) -> list[charts.Job]:
    labels = list(dict.fromkeys(label for _, label in report.trends))
    return [(charts.trend_of, (label, {b: t for (b, lab), t in report.trends.items() if lab == label},
                               report.baseline_at, report.trend_better.get(label.split(" (")[0])))
            for label in labels]


def html(report: Report, painter: charts.Painter, started: list) -> str:
    """The HTML page; `started` is what `painter` was given of `device_jobs(report)`, the trends are added here."""
    drawn = painter.finish(painter.start(trend_jobs(report)))
    comparison, *per_device = painter.finish(started)
    count = len(report.devices)
    devices = [{**device.__dict__, "charts": per_device[i] + per_device[count + i],
                "throughput_html": _html_table(device.throughput, device.modeled_columns),
                "resilience_html": _html_table(device.resilience),
                "correctness_html": _html_table(device.correctness)} for i, device in enumerate(report.devices)]
    environment = Environment(loader=PackageLoader("harness.report"), autoescape=select_autoescape())
    return environment.get_template("report.html.j2").render(
        report=report, devices=devices, comparison_html=_html_table(report.comparison, _modeled_in(report)),
        comparison_charts=comparison, trend_charts=[chart for charts_ in drawn for chart in charts_],
        trend_runs=trend.run_count(report.trends.values()))


def _modeled_in(report: Report) -> list[str]:
    return sorted({c for d in report.devices for c in d.modeled_columns} & {"FPS/W", "power W"})


def verdict_lines(report: Report) -> list[str]:
    """What a morning reader needs first: the run's verdict, then each regressed figure per board, then the boards
    that had nothing to be judged against and why."""
    tests = sum(len(d.verdicts) for d in report.devices)
    failed = report.failed_tests
    said = [f"{len(report.regressions)} figures regressed" if report.regressions else "",
            f"{sum(map(len, failed.values()))} of {tests} tests failed" if failed else ""]
    if report.passed:
        said = [f"{tests} tests passed", "no baseline given: nothing gated" if report.baseline is None else
                f"{len(report.compared)} figures compared with the baseline, none regressed" if report.compared else
                "no earlier figure to compare with"]
    lines = [f"**Verdict: {'PASSED' if report.passed else 'FAILED'}**: {'; '.join(s for s in said if s)}.", ""]
    by_board: dict[str, list[Comparison]] = {}
    for comparison in report.regressions:
        by_board.setdefault(comparison.row.board, []).append(comparison)
    for board, regressed in sorted(by_board.items()):
        lines += [f"Regressed on {board}:", ""]
        lines += [f"- {c.row.power_mode or ''} {c.row.precision or ''} b{c.row.batch or ''}: {c.describe()}"
                  for c in regressed] + [""]
    for board, tests_failed in sorted(failed.items()):
        lines += [f"Failed on {board}: {', '.join(tests_failed)}", ""]
    lines += [f"- {why}" for why in report.unbaselined.values()] + ([""] if report.unbaselined else [])
    return lines


def markdown(report: Report) -> str:
    lines = [f"# jetson-hil report: {', '.join(report.runs)}", "", *verdict_lines(report)]
    if report.modeled:
        lines += ["Columns marked (modeled) are a virtual board's modeled figures, not measurements.", ""]
    lines += ["## Regression gate", ""]
    if report.baseline is None:
        lines += ["No baseline given: nothing gated.", ""]
    else:
        lines += [f"Against {report.baseline}: {len(report.compared)} measured figures compared, "
                  f"**{len(report.regressions)} regressed**.", ""]
    lines += ["## Across devices and modes", "", _md_table(report.comparison, _modeled_in(report))]
    for device in report.devices:
        lines += [f"## {device.board} ({device.profile})", ""]
        lines += [f"- {k}: {v}" for k, v in device.provenance.items()] + [""]
        failed = {t: v for t, v in device.verdicts.items() if v in ("failed", "error")}
        lines += [f"Verdicts: {len(device.verdicts) - len(failed)} of {len(device.verdicts)} passed"
                  + (f"; failed: {', '.join(failed)}" if failed else ""), ""]
        for title, table, modeled in (("Throughput", device.throughput, device.modeled_columns),
                                      ("Offline resilience", device.resilience, []),
                                      ("Correctness", device.correctness, [])):
            if not table.empty:
                lines += [f"### {title}", "", _md_table(table, modeled)]
    return "\n".join(lines)


def as_json(report: Report) -> str:
    def records(table: pd.DataFrame) -> list[dict]:
        return json.loads(table.to_json(orient="records")) if not table.empty else []

    def device(d: Device) -> dict:
        return {"board": d.board, "profile": d.profile, "runs": d.runs, "provenance": d.provenance,
                "verdicts": d.verdicts, "modeled_columns": d.modeled_columns, "throughput": records(d.throughput),
                "resilience": records(d.resilience), "correctness": records(d.correctness)}

    return json.dumps({
        "runs": report.runs, "verdict": "passed" if report.passed else "failed", "baseline": report.baseline,
        "unbaselined": report.unbaselined, "failed_tests": report.failed_tests, "modeled": report.modeled,
        "regressions": [{"metric": c.row.metric, "phase": c.row.phase, "board": c.row.board,
                         "power_mode": c.row.power_mode, "precision": c.row.precision, "batch": c.row.batch,
                         "baseline": c.baseline.value, "now": c.row.value, "change": c.change,
                         "allowed": c.allowed} for c in report.regressions],
        "compared": len(report.compared), "comparison": records(report.comparison),
        "trends": [{"board": board, "metric": label, "runs": len(table), "first": str(table.index.min()),
                    "last": str(table.index.max()), "latest": json.loads(table.iloc[-1].to_json())}
                   for (board, label), table in report.trends.items()],
        "devices": [device(d) for d in report.devices],
    }, indent=1)


def write(report: Report, out: Path, painter: charts.Painter | None = None, started: list | None = None,
          ) -> list[Path]:
    """report.html, report.md and report.json in `out`, each replaced whole. A caller that started the device
    charts early (`device_jobs`, while it read the history) passes its painter and what it started."""
    out.mkdir(parents=True, exist_ok=True)
    with contextlib.ExitStack() as stack:
        if painter is None or started is None:
            jobs = device_jobs(report)
            painter = stack.enter_context(charts.Painter(len(jobs) + len(report.trends)))
            started = painter.start(jobs)
        page = html(report, painter, started)
    return [replace_atomically(out / name, text)
            for name, text in zip(NAMES, (page, markdown(report), as_json(report)), strict=True)]
