"""A missing tool skips a test on a developer's machine and fails it in CI, where setup.sh installs every tool."""

from __future__ import annotations

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize(("ci", "outcome"), [("true", {"failed": 1}), ("", {"skipped": 1})])
def test_a_missing_tool_fails_only_in_ci(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, ci: str,
                                         outcome: dict[str, int]) -> None:
    monkeypatch.setenv("CI", ci)
    monkeypatch.setenv("PYTHONPATH", str(REPO))
    pytester.makepyfile("""
        from tests.ci import unavailable

        def test_needs_sshd():
            unavailable("/usr/sbin/sshd not found: install the Debian package openssh-server")
    """)
    result = pytester.runpytest_subprocess("-rsf", "-p", "no:cacheprovider")
    result.assert_outcomes(**outcome)
    result.stdout.fnmatch_lines(["*/usr/sbin/sshd not found*"])
