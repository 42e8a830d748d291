"""The one rule above the rest: harness code outside harness/virtual/ never branches on 'virtual'."""

from __future__ import annotations

import re
from pathlib import Path

HARNESS = Path(__file__).parents[1] / "harness"
BRANCH = re.compile(r"^\s*(if|elif|while|match|case)\b.*virtual|\bif\b.*virtual.*\belse\b", re.IGNORECASE)


def test_no_branch_on_virtual_outside_harness_virtual() -> None:
    offenders = [f"{path.relative_to(HARNESS)}:{number}: {line.strip()}"
                 for path in HARNESS.rglob("*.py") if "virtual" not in path.relative_to(HARNESS).parts
                 for number, line in enumerate(path.read_text().splitlines(), 1) if BRANCH.search(line)]
    assert offenders == []
