"""How the harness reaches a board: over SSH, or directly when it runs on the board itself."""

from __future__ import annotations

from harness.transport.base import CommandResult, StreamingCommand, Transport
from harness.transport.local import LocalTransport
from harness.transport.ssh import SshTransport

__all__ = ["CommandResult", "LocalTransport", "SshTransport", "StreamingCommand", "Transport"]
