"""Which earlier run a report compares with: a run folder (or its results.csv), `latest` (the newest other run
of the same board next to the first run), or a date (the newest such run measured on or before it)."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from harness.errors import HarnessError
from harness.report.runs import RESULTS_FILE, RunData, load_run


def resolve(spec: str, runs: list[RunData]) -> tuple[str, RunData]:
    if spec != "latest" and not _is_date(spec):
        path = Path(spec)
        if not path.exists():
            raise HarnessError(f"--baseline {spec}: no such run folder; pass a run folder, its {RESULTS_FILE}, "
                               "'latest' or a date (YYYY-MM-DD)")
        return spec, load_run(path)
    until = None if spec == "latest" else dt.datetime.fromisoformat(spec).replace(tzinfo=dt.timezone.utc) + \
        dt.timedelta(days=1)
    boards = {row.board for run in runs for row in run.rows}
    taken = {run.folder.resolve() for run in runs}
    best: tuple[str, RunData] | None = None
    for results in sorted(runs[0].folder.parent.glob(f"*/{RESULTS_FILE}")):
        if results.parent.resolve() in taken:
            continue
        try:
            candidate = load_run(results.parent)
        except HarnessError:
            continue  # another harness version's or a damaged run is no baseline
        times = [row.time for row in candidate.rows if row.board in boards]
        if not times:
            continue
        last = max(times)
        if until is not None and dt.datetime.fromisoformat(last) >= until:
            continue
        if best is None or last > best[0]:
            best = (last, candidate)
    if best is None:
        raise HarnessError(f"--baseline {spec}: no earlier run of {', '.join(sorted(boards))} in "
                           f"{runs[0].folder.parent}" + ("" if spec == "latest" else f" measured on or before {spec}"))
    return str(best[1].folder), best[1]


def _is_date(spec: str) -> bool:
    try:
        dt.date.fromisoformat(spec)
    except ValueError:
        return False
    return True
