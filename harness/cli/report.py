"""`hil report`: per-device and cross-device reports of run folders, gated against a baseline."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from harness.gates import load_policy
from harness.history import History
from harness.report import build, load_run, trend, write
from harness.report.baseline import resolve
from harness.report.charts import Painter
from harness.report.render import device_jobs

out = Console(markup=False, highlight=False, soft_wrap=True)  # figures say [raw]: not markup
POLICY = Path(__file__).resolve().parents[2] / "suites" / "regression.yaml"


def report(
    runs: Annotated[list[Path], typer.Argument(help="run folders (reports/<run>) or their results.csv")],
    baseline: Annotated[str | None, typer.Option(help="a run folder or a run's name, 'latest' or a date YYYY-MM-DD: "
                                                      "per figure the newest passing one of an earlier run, in the "
                                                      "runs' report folder or the --history")] = None,
    out_dir: Annotated[Path | None, typer.Option("--out", help="where to write (default: the first run)")] = None,
    regression_config: Annotated[Path, typer.Option(help="per-metric thresholds")] = POLICY,
    history: Annotated[str | None, typer.Option(help="history database (SQLAlchemy URL or SQLite file) for the "
                                                     "trend section and the baseline")] = None,
) -> None:
    """Write report.html, report.md and report.json; exit 1 when a figure regressed against the baseline."""
    loaded = [load_run(path) for path in runs]
    policy = load_policy(regression_config)
    out.print(f"building the report of {', '.join(run.name for run in loaded)}")
    past_runs = History(history) if history is not None else None
    made = build(loaded, policy, resolve(baseline, loaded, policy, past_runs) if baseline else None)
    jobs = device_jobs(made)
    with Painter(len(jobs) + len(trend.METRICS)) as painter:
        started = painter.start(jobs)  # drawn while the history is read
        if past_runs is not None:
            boards = [device.board for device in made.devices]
            past = past_runs.figures(boards, trend.WANTED)
            out.print(f"history: {len(past)} rows of {', '.join(boards)}")
            made.trends = trend.series(past)
        out.print("rendering tables and charts")
        written = write(made, out_dir or loaded[0].folder, painter, started)
    for path in written:
        out.print(f"wrote {path}")
    if made.baseline is not None:
        out.print(f"baseline {made.baseline}: {len(made.compared)} measured figures compared, "
                  f"{len(made.regressions)} regressed")
    for comparison in made.regressions:
        row = comparison.row
        out.print(f"REGRESSION {row.board} {row.power_mode or '-'} {row.precision or '-'} b{row.batch or '-'}: "
                  f"{comparison.describe()}")
    if made.regressions:
        sys.exit(1)
