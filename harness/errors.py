"""Errors the harness reports to a person in one line, never as a deep traceback."""

from __future__ import annotations

from pathlib import Path


class HarnessError(Exception):
    """Base class: the message is complete and meant for the lab engineer."""


class ConfigError(HarnessError):
    """A profile, inventory or option is wrong; names the file, the field and what is expected."""

    def __init__(self, source: str | Path, field: str, problem: str) -> None:
        self.source = str(source)
        self.field = field
        self.problem = problem
        where = f"{self.source}: {field}" if field else self.source
        super().__init__(f"{where}: {problem}")


class UnknownDeviceError(HarnessError):
    """A --device selector matched no board or profile."""


class LeaseError(HarnessError):
    """No board matching the selector could be leased in time."""


class SpareWorker(LeaseError):
    """Every usable board is held by this run's other workers: a farm run with more workers than boards."""


class TransportError(HarnessError):
    """The board could not be reached or the connection broke."""


class HostKeyError(TransportError):
    """The board's host key is unknown or does not match known_hosts."""


class CommandTimeout(TransportError):
    """A remote command did not finish within its timeout."""


class CommandFailed(HarnessError):
    """A remote command exited non-zero where success was required."""


class ParseError(HarnessError):
    """Tool output did not have the expected shape."""


class DeployError(HarnessError):
    """The module could not be deployed, started or reached on a board; says which step and why."""
