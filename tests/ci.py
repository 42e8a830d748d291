"""A test whose tool is missing skips on a developer's machine and fails in CI, which installs every tool."""

from __future__ import annotations

import os
from typing import NoReturn

import pytest

#: CI (`.ci/run`, CI=true) runs scripts/setup.sh, so a missing tool there is a broken install, not a reason to skip
IN_CI = os.environ.get("CI") == "true"


def unavailable(reason: str) -> NoReturn:
    """Skip with `reason`, or fail with it under CI=true."""
    if IN_CI:
        pytest.fail(f"{reason} (CI=true: scripts/setup.sh installs it, so a missing tool fails the run)",
                    pytrace=False)
    pytest.skip(reason)
