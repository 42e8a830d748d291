"""A test's verdict as a row of its own beside its figures: `test_passed` 1 or 0, written when the test ends.

Why a row: a baseline must come from a night whose test passed (a night that failed its gate would otherwise
become the next night's baseline and hide the regression for good), and the results file and the history are
where baselines are read. JUnit files are not in the history, and a run without --junitxml has none.
"""

from __future__ import annotations

from collections.abc import Iterable

from harness.results.table import Row, RowContext

VERDICT = "test_passed"


def verdict_row(context: RowContext, passed: bool) -> Row:
    return context.row(VERDICT, 1.0 if passed else 0.0, "verdict")


def passed_tests(rows: Iterable[Row]) -> set[tuple[str, str, str]]:
    """(run, board, test) of every test whose verdict row says it passed."""
    return {(r.run, r.board, r.test) for r in rows if r.metric == VERDICT and r.value == 1.0}


def passing_figures(rows: Iterable[Row]) -> list[Row]:
    """The measured figures of tests that passed: what may be a baseline or feed a floor."""
    rows = list(rows)
    passed = passed_tests(rows)
    return [r for r in rows if r.metric != VERDICT and r.source == "measured" and (r.run, r.board, r.test) in passed]
