"""Shared fixtures; the sshd ones live in tests/sshd.py, the virtual-board ones in tests/virtual.py, the board of
the child suite runs in tests/suite_runs.py."""

from __future__ import annotations

from tests.sshd import own_sshd, ssh_transport, sshd_server
from tests.suite_runs import board_name
from tests.virtual import virtual_board

__all__ = ["board_name", "own_sshd", "ssh_transport", "sshd_server", "virtual_board"]
