"""Shared fixtures; the sshd ones live in tests/sshd.py, the virtual-board ones in tests/virtual.py, the board of
the child suite runs in tests/suite_runs.py, the PostgreSQL server in tests/postgres.py."""

from __future__ import annotations

from tests.postgres import postgres_url
from tests.sshd import own_sshd, ssh_transport, sshd_server
from tests.suite_runs import board_name
from tests.virtual import virtual_board

__all__ = ["board_name", "own_sshd", "postgres_url", "ssh_transport", "sshd_server", "virtual_board"]
