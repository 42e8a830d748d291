"""A report written three ways: one self-contained HTML file (charts embedded), Markdown for a CI job summary,
and JSON for tools. Modeled figures are marked in each."""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd
from jinja2 import Environment, PackageLoader, select_autoescape

from harness.report import charts
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


def html(report: Report) -> str:
    environment = Environment(loader=PackageLoader("harness.report"), autoescape=select_autoescape())
    labels = list(dict.fromkeys(label for _, label in report.trends))
    jobs: list[tuple[Callable[..., charts.Charts], tuple[Any, ...]]] = [
        (charts.comparison, (report.comparison, report.modeled)),
        *((charts.trend_of, (label, {b: t for (b, lab), t in report.trends.items() if lab == label},
                             report.baseline_at)) for label in labels),
        *((charts.device, (d.throughput, d.board, d.modeled_columns)) for d in report.devices),
        *((charts.timelines, (d.timelines, d.board)) for d in report.devices)]
    drawn = charts.draw(jobs)
    comparison, trends = drawn[0], [c for charts_ in drawn[1:1 + len(labels)] for c in charts_]
    per_device = drawn[1 + len(labels):]
    count = len(report.devices)
    devices = [{**device.__dict__, "charts": per_device[i] + per_device[count + i],
                "throughput_html": _html_table(device.throughput, device.modeled_columns),
                "resilience_html": _html_table(device.resilience),
                "correctness_html": _html_table(device.correctness)} for i, device in enumerate(report.devices)]
    return environment.get_template("report.html.j2").render(
        report=report, devices=devices, comparison_html=_html_table(report.comparison, _modeled_in(report)),
        comparison_charts=comparison, trend_charts=trends)


def _modeled_in(report: Report) -> list[str]:
    return sorted({c for d in report.devices for c in d.modeled_columns} & {"FPS/W", "power W"})


def markdown(report: Report) -> str:
    lines = [f"# jetson-hil report: {', '.join(report.runs)}", ""]
    if report.modeled:
        lines += ["Columns marked (modeled) are a virtual board's modeled figures, not measurements.", ""]
    lines += ["## Regression gate", ""]
    if report.baseline is None:
        lines += ["No baseline given: nothing gated.", ""]
    else:
        lines += [f"Against {report.baseline}: {len(report.compared)} measured figures compared, "
                  f"**{len(report.regressions)} regressed**.", ""]
        lines += [f"- {c.row.board} {c.row.power_mode or ''} {c.row.precision or ''} b{c.row.batch or ''}: "
                  f"{c.describe()}" for c in report.regressions]
        lines += [""]
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
        "runs": report.runs, "baseline": report.baseline, "modeled": report.modeled,
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


def write(report: Report, out: Path) -> list[Path]:
    """report.html, report.md and report.json in `out`, each replaced whole."""
    out.mkdir(parents=True, exist_ok=True)
    return [replace_atomically(out / name, text)
            for name, text in zip(NAMES, (html(report), markdown(report), as_json(report)), strict=True)]
