"""The transport contract: how the harness talks to a board, whatever carries the bytes.

Board operations, deployment and telemetry only use this interface, so a real Jetson over SSH,
the harness running on the Jetson itself, and a virtual board all go through the same code.
"""

from __future__ import annotations

import abc
import contextlib
import logging
import shlex
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from harness.errors import CommandFailed, HarnessError

log = logging.getLogger(__name__)

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


#: Every command the harness starts on a board runs as `sh -c COMMAND jetson-hil:cmd:SESSION:N:`: the tag is the
#: shell's $0, so it shows in the command line of the process group's leader. A session kills its own command by
#: it when the command outlives its call (timeout, broken connection), and what dead sessions left behind.
COMMAND_TAG = "jetson-hil:cmd:"
_TAG_PATTERN = "jetson-hil[:]cmd:"  # a regex that matches the tag but not itself, so a killer spares itself


def kill_tagged(pattern_suffix: str, spare: str | None = None) -> str:
    """Shell that kills the process group of every tagged command matching `pattern_suffix` (regex), except those
    whose command line contains `spare`, and prints their pids; as root where the commands were sudo'd."""
    keep = f"*{spare}*) ;; " if spare else ""
    return (f"for p in $(pgrep -f '{_TAG_PATTERN}{pattern_suffix}'); do "
            f"case \"$(tr '\\0' ' ' < /proc/$p/cmdline 2>/dev/null)\" in {keep}*) "
            f"pkill -KILL -g $p 2>/dev/null || sudo -n pkill -KILL -g $p 2>/dev/null; echo $p;; esac; done; true")


class Transport(abc.ABC):
    """Run commands on a board, move files, and reach ports on it."""

    #: human name of the far end, used in every error message
    target: str = "board"
    #: tags this connection's commands (see COMMAND_TAG); duplicates share it
    session: str = "unset"
    _sequence: Iterator[int]

    def _tag(self, command: str) -> tuple[str, str]:
        """(the command wrapped with a fresh tag, the tag)."""
        tag = f"{COMMAND_TAG}{self.session}:{next(self._sequence)}:"
        return f"exec sh -c {shlex.quote(command)} {tag}", tag

    def _kill_tagged(self, tag: str) -> None:
        """Best effort: kill what a tagged command left running on the board (its call has given up on it)."""
        suffix = tag[len(COMMAND_TAG):]
        try:
            self.run(kill_tagged(suffix), timeout=15)
        except HarnessError as exc:
            log.warning("%s: could not kill the leftovers of `%s`: %s", self.target, tag, exc)

    def kill_strays(self) -> list[str]:
        """Kill the tagged commands of other sessions (a session holding the board's lease knows them dead)."""
        result = self.run(kill_tagged("", spare=f"{COMMAND_TAG}{self.session}:"), timeout=30)
        return result.stdout.split()

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
    def duplicate(self) -> Transport:
        """A second, independent connection to the same board (not yet connected)."""

    @abc.abstractmethod
    def reconnect(self, timeout: float = 300.0) -> None:
        """Drop the connection and connect again, retrying with backoff (after a reboot)."""

    def __enter__(self) -> Transport:
        self.connect()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
