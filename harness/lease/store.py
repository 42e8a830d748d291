"""What a lease store keeps per board, and the protocol every store implements (files on one controller,
PostgreSQL advisory locks for a farm with several): who holds a board, whether it is quarantined and why, and
how its last runs went."""

from __future__ import annotations

import datetime as dt
import os
import socket
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol


def now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")


@dataclass(frozen=True)
class Holder:
    """Who holds a lease: a process on a host, what for, and the run it belongs to (an xdist run's workers share
    one, so a worker knows that a board is taken by its own run and waiting would be futile)."""

    pid: int = field(default_factory=os.getpid)
    host: str = field(default_factory=socket.gethostname)
    since: str = field(default_factory=now)
    purpose: str = ""
    run: str = ""

    def describe(self) -> str:
        return f"pid {self.pid} on {self.host} since {self.since}" + (f" ({self.purpose})" if self.purpose else "")

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def of(cls, data: dict[str, Any]) -> Holder:
        return cls(**{k: data[k] for k in ("pid", "host", "since", "purpose", "run") if k in data})


@dataclass(frozen=True)
class Quarantine:
    """A board kept out of selection: why, since when, and when it may be checked again (None: until released)."""

    reason: str
    since: str
    recheck_at: str | None = None

    def describe(self) -> str:
        return f"{self.reason} (since {self.since})"

    def due(self) -> bool:
        """Its re-check time has come: the next lease health-checks it instead of skipping it."""
        return self.recheck_at is not None and dt.datetime.fromisoformat(self.recheck_at) <= dt.datetime.now(
            dt.timezone.utc)


@dataclass(frozen=True)
class BoardRecord:
    """How a board's last session went; `infra_failures` counts the infrastructure failures in a row (a board
    that did not answer, failed its health check or was lost mid-run; failing tests are not infrastructure)."""

    last_run: str = ""
    at: str = ""
    outcome: str = ""
    infra_failures: int = 0


class Held(Protocol):
    board: str

    def release(self) -> None: ...


class LeaseStore(Protocol):
    """Leases, quarantine and run records of a lab's boards. `try_lease` never waits (see `acquire`)."""

    #: where it is, for messages (never with a password)
    shown: str

    def try_lease(self, board: str, holder: Holder) -> Held | None: ...

    def holder(self, board: str) -> Holder | None: ...

    def quarantine(self, board: str, reason: str, recheck_after_s: float | None) -> None: ...

    def quarantined(self, board: str) -> Quarantine | None: ...

    def release_quarantine(self, board: str) -> None: ...

    def record_run(self, board: str, run: str, outcome: str, infra_failure: bool) -> BoardRecord: ...

    def record(self, board: str) -> BoardRecord: ...
