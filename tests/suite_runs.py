"""Child pytest runs of the lab suites on one virtual board, as a lab would run them (shared by the e2e files)."""

from __future__ import annotations

import csv
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from harness.report.runs import read_junit
from tests.virtual import docker_or_skip

REPO = Path(__file__).resolve().parents[1]
PROFILE = "orin-nano"  # a profile the other virtual tests don't lease
CHILD_TIMEOUT_S = 900


@pytest.fixture(scope="module")
def board_name() -> Iterator[str]:
    """One running virtual board for every child run here (each would start and deploy one otherwise)."""
    docker_or_skip()
    from harness.virtual import boards

    board = boards.up(PROFILE)
    try:
        yield board.name
    finally:
        boards.down(board.name)


def suites(report: Path, run_id: str, *args: str | Path, tests: str = "suites",
           ) -> tuple[subprocess.CompletedProcess[str], Path]:
    """`pytest TESTS --device=virtual:orin-nano ARGS` in a child process, as a lab would run it."""
    junit = report / f"{run_id}.xml"
    command = [sys.executable, "-m", "pytest", tests, f"--device=virtual:{PROFILE}", "--report-dir", str(report),
               "--run-id", run_id, f"--junitxml={junit}", "-p", "no:cacheprovider", "-q", *map(str, args)]
    done = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=CHILD_TIMEOUT_S, check=False)
    return done, junit


def outcomes(junit: Path) -> dict[str, str]:
    """test name → passed | failed | skipped | error, from the child's JUnit XML (read as the report reads it)."""
    return read_junit(junit).verdicts


def rows(report: Path, run_id: str) -> list[dict[str, str]]:
    with (report / run_id / "results.csv").open() as handle:
        return list(csv.DictReader(handle))
