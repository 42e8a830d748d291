"""Which earlier run a report compares with: a run folder (or its results.csv), `latest` (the newest other run
of the same boards next to the first run), or a date (the newest such run measured on or before it); the
throughput gate's own `resolve_baseline` finds it."""

from __future__ import annotations

from pathlib import Path

from harness.errors import HarnessError
from harness.gates.baseline import is_date, resolve_baseline
from harness.report.runs import RESULTS_FILE, RunData, load_run


def resolve(spec: str, runs: list[RunData]) -> tuple[str, RunData]:
    if spec != "latest" and not is_date(spec) and not Path(spec).exists():
        raise HarnessError(f"--baseline {spec}: no such run folder; pass a run folder, its {RESULTS_FILE}, "
                           "'latest' or a date (YYYY-MM-DD)")
    boards = sorted({row.board for run in runs for row in run.rows})
    found = resolve_baseline(spec, runs[0].folder.parent, boards=boards, exclude={run.folder.name for run in runs})
    if found is None:
        raise HarnessError(f"--baseline {spec}: no earlier run of {', '.join(boards)} in {runs[0].folder.parent}"
                           + ("" if spec == "latest" else f" measured on or before {spec}"))
    folder = Path(found[0]).parent
    return str(folder), load_run(folder)
