"""Shared fixtures; the sshd ones live in tests/sshd.py."""

from __future__ import annotations

from tests.sshd import own_sshd, ssh_transport, sshd_server

__all__ = ["own_sshd", "ssh_transport", "sshd_server"]
