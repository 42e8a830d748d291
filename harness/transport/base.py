"""The transport contract: how the harness talks to a board, whatever carries the bytes.

Board operations, deployment and telemetry only use this interface, so a real Jetson over SSH,
the harness running on the Jetson itself, and a virtual board all go through the same code.
"""

from __future__ import annotations

import abc
import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from harness.errors import CommandFailed

DEFAULT_TIMEOUT_S = 60.0


@dataclass(frozen=True)
class CommandResult:
    """What one remote command did."""

    command: str
    exit_code: int
    stdout: str
    stderr: str
    duration_s: float

    @property
    def ok(self) -> bool:
        return self.exit_code == 0

    def check(self) -> CommandResult:
        """Return self, or raise CommandFailed with the command's stderr when it failed."""
        if not self.ok:
            detail = (self.stderr or self.stdout).strip().splitlines()
            tail = detail[-1] if detail else "no output"
            raise CommandFailed(f"`{self.command}` exited {self.exit_code}: {tail}")
        return self


class StreamingCommand(abc.ABC):
    """A long-running command whose stdout is read line by line while it runs."""

    @abc.abstractmethod
    def lines(self) -> Iterator[str]:
        """Yield stdout lines (without newline) until the command ends or its timeout passes."""

    @abc.abstractmethod
    def stop(self) -> int | None:
        """Stop the command if it still runs; return its exit code when known."""

    def __enter__(self) -> StreamingCommand:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


class Transport(abc.ABC):
    """Run commands on a board, move files, and reach ports on it."""

    #: human name of the far end, used in every error message
    target: str = "board"

    @abc.abstractmethod
    def connect(self) -> None:
        """Open the connection (idempotent)."""

    @abc.abstractmethod
    def close(self) -> None:
        """Release the connection (idempotent)."""

    @abc.abstractmethod
    def run(self, command: str, timeout: float = DEFAULT_TIMEOUT_S, stdin: str | None = None) -> CommandResult:
        """Run a shell command; raise CommandTimeout if it does not finish within `timeout` seconds."""

    @abc.abstractmethod
    def stream(self, command: str, timeout: float | None = None) -> StreamingCommand:
        """Start a command and read its stdout as it comes; `timeout` bounds its whole run."""

    @abc.abstractmethod
    def put(self, local: str | Path, remote: str) -> None:
        """Copy a local file to the board."""

    @abc.abstractmethod
    def get(self, remote: str, local: str | Path) -> None:
        """Copy a file from the board."""

    @abc.abstractmethod
    def forward(self, remote_port: int, remote_host: str = "127.0.0.1") -> contextlib.AbstractContextManager[int]:
        """Make `remote_host:remote_port` as seen from the board reachable locally; yields the local port."""

    @abc.abstractmethod
    def reconnect(self, timeout: float = 300.0) -> None:
        """Drop the connection and connect again, retrying with backoff (after a reboot)."""

    def __enter__(self) -> Transport:
        self.connect()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
