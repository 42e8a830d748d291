"""Shared fixtures; the sshd ones live in tests/sshd.py, the virtual-board ones in tests/virtual.py."""

from __future__ import annotations

from tests.sshd import own_sshd, ssh_transport, sshd_server
from tests.virtual import virtual_board

__all__ = ["own_sshd", "ssh_transport", "sshd_server", "virtual_board"]
