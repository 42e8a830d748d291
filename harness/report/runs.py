"""A run folder read back: its results as a typed pandas DataFrame, its JUnit verdicts and provenance, and the
resilience timelines. A crashed or partial run loads with what it had measured."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from harness.errors import HarnessError
from harness.results import Row, read_results
from harness.results.table import FIELDS

RESULTS_FILE = "results.csv"
#: a single-board run's JUnit file, and a farm run's one per board (`junit-<board>.xml`, with its provenance)
JUNIT_FILES = ("junit.xml", "junit-*.xml")
CATEGORIES = ("run", "board", "profile", "power_mode", "precision", "backend", "device", "quantizer", "suite",
              "test", "phase", "metric", "unit", "source")


@dataclass
class Suite:
    """What one JUnit file says: its testsuite properties (provenance) and each test's verdict."""

    properties: dict[str, str] = field(default_factory=dict)
    verdicts: dict[str, str] = field(default_factory=dict)  # test → passed | failed | error | skipped


@dataclass
class RunData:
    """One run: where it is, its rows, and what its JUnit files say per board (none when it has none)."""

    folder: Path
    rows: list[Row]
    suites: dict[str, Suite] = field(default_factory=dict)  # board (its `board` property) → its suite
    timelines: dict[str, pd.DataFrame] = field(default_factory=dict)

    def suite(self, board: str) -> Suite:
        """The board's JUnit suite; a file that names no board (an old run's, xdist's merged one) counts for every
        board of the run only when no file names one."""
        return self.suites.get(board) or (self.suites.get("", Suite()) if len(self.suites) <= 1 else Suite())

    @property
    def name(self) -> str:
        return self.folder.name

    def frame(self) -> pd.DataFrame:
        return frame(self.rows)


def frame(rows: list[Row]) -> pd.DataFrame:
    """Rows as a tidy DataFrame with the results.csv columns: categories, floats, Int64 batch, UTC times."""
    data = pd.DataFrame([{name: getattr(row, name) for name in FIELDS} for row in rows], columns=list(FIELDS))
    for name in CATEGORIES:
        data[name] = data[name].astype("category")
    data["batch"] = data["batch"].astype("Int64")
    data["value"] = data["value"].astype(float)
    data["spread"] = data["spread"].astype(float)
    data["time"] = pd.to_datetime(data["time"], utc=True)
    return data


def load_run(path: Path, junit: Path | None = None) -> RunData:
    """A run folder (or its results.csv); one clear line when it is not one or a row is damaged. Verdicts and
    provenance come from `junit`, else from a junit.xml in the folder."""
    folder = path.parent if path.name == RESULTS_FILE else path
    results = folder / RESULTS_FILE
    if not results.is_file():
        raise HarnessError(f"{path} is not a run folder: it has no {RESULTS_FILE} (pass reports/<run>)")
    try:
        rows = read_results(results)
    except (ValueError, KeyError) as exc:
        raise HarnessError(f"{results}: a damaged row ({exc}); fix or remove that line") from None
    run = RunData(folder, rows)
    files = {path.resolve() for pattern in JUNIT_FILES for path in folder.glob(pattern)}
    if junit is not None and junit.is_file():
        files.add(junit.resolve())
    for path in sorted(files):
        suite = read_junit(path)
        board = suite.properties.get("board", "")
        if board or "" not in run.suites:
            run.suites[board] = suite
    for timeline in sorted((folder / "resilience").glob("*.csv")):
        run.timelines[timeline.stem] = pd.read_csv(timeline)
    return run


def read_junit(path: Path) -> Suite:
    """A JUnit XML file's testsuite properties and each test's verdict (the first suite's properties win)."""
    try:
        root = ET.parse(path).getroot()
    except ET.ParseError as exc:
        raise HarnessError(f"{path}: not a JUnit XML file ({exc})") from None
    suite = Suite()
    for prop in root.iter("property"):
        suite.properties.setdefault(prop.get("name", ""), prop.get("value", ""))
    for case in root.iter("testcase"):
        kinds = [child.tag for child in case if child.tag in ("failure", "error", "skipped")]
        suite.verdicts[case.get("name", "")] = {"failure": "failed"}.get(kinds[0], kinds[0]) if kinds else "passed"
    return suite
