"""Which earlier figures a report compares with (`--baseline` of `hil report`): the throughput gate's own resolver,
over the report's run folders' neighbours and the history, so both judge against the same figures."""

from __future__ import annotations

from harness.errors import HarnessError
from harness.gates import GatePolicy
from harness.gates.baseline import Baseline, resolve_baseline
from harness.history import History
from harness.report.runs import RunData


def resolve(spec: str, runs: list[RunData], policy: GatePolicy, history: History | None = None) -> Baseline:
    """The baseline of `runs`' boards; an error when it has no figure at all (`hil report` was asked to gate)."""
    boards = sorted({row.board for run in runs for row in run.rows})
    baseline = resolve_baseline(spec, runs[0].folder.parent, boards=boards, metrics=policy.metrics,
                                exclude={run.name for run in runs}, history=history)
    if not baseline.rows:
        raise HarnessError(f"--baseline {spec}: no earlier run of {', '.join(boards)} with a passing figure in "
                           f"{baseline.where}")
    return baseline
