"""Image builds for virtual boards are bounded: a stalled debootstrap ends in one clear error at its deadline."""

from __future__ import annotations

import subprocess
import sys
import time

import pytest

from harness.errors import HarnessError
from harness.virtual.image import run_with_progress
from tests.virtual import docker_or_skip


def test_a_stalled_build_step_is_killed_at_its_deadline() -> None:
    started = time.monotonic()
    # the child keeps the output pipe open, as a hung wget under debootstrap would
    with pytest.raises(HarnessError, match=r"debootstrap stand-in did not finish within 1 s; last lines:\nfetching"):
        run_with_progress(["sh", "-c", "echo fetching; sleep 60 & wait"], "debootstrap stand-in", timeout_s=1)
    assert time.monotonic() - started < 10


def test_a_failing_build_step_says_how_it_ended() -> None:
    with pytest.raises(HarnessError, match=r"step failed \(exit 3\); last lines:\nboom"):
        run_with_progress(["sh", "-c", "echo boom; exit 3"], "step", timeout_s=30)


def test_hil_virtual_refuses_a_bad_name_and_says_when_there_is_no_board() -> None:
    bad = subprocess.run([sys.executable, "-m", "harness", "virtual", "up", "nano", "--name", "a/b"],
                         capture_output=True, text=True, timeout=60)
    assert bad.returncode == 2 and "Traceback" not in bad.stderr
    assert "Invalid value for --name: 'a/b': a board name is letters, digits" in " ".join(bad.stderr.split())
    docker_or_skip()
    gone = subprocess.run([sys.executable, "-m", "harness", "virtual", "down", "no-such-board-here"],
                          capture_output=True, text=True, timeout=60)
    assert gone.returncode == 1 and gone.stdout.strip() == "no-such-board-here: no such virtual board"
