"""Board leases: a file lock per board so two pytest processes (or xdist workers) never share a board."""

from __future__ import annotations

import json
import os
import socket
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from filelock import FileLock, Timeout

from harness.errors import LeaseError

LEASE_DIR_ENV = "JETSON_HIL_LEASE_DIR"
POLL_S = 0.5
#: how often a wait for a busy board says who holds it
WAIT_REPORT_S = 30.0


def default_lease_dir() -> Path:
    env = os.environ.get(LEASE_DIR_ENV)
    return Path(env) if env else Path.home() / ".cache" / "jetson-hil" / "leases"


@dataclass
class Lease:
    """A held lease on one board; release() (or the context exit) frees it."""

    board: str
    lock: FileLock
    info_path: Path

    def release(self) -> None:
        self.info_path.unlink(missing_ok=True)
        self.lock.release()

    def __enter__(self) -> Lease:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def holder(lease_dir: Path, board: str) -> dict | None:
    """Who holds `board` now (pid, host, since), or None when it is free."""
    lock = FileLock(lease_dir / f"{board}.lock")
    try:
        lock.acquire(timeout=0)
    except Timeout:
        try:
            return json.loads((lease_dir / f"{board}.holder.json").read_text())
        except (OSError, ValueError):
            return {"pid": None, "host": None, "since": None}
    lock.release()
    return None


def acquire(boards: Sequence[str], lease_dir: Path, timeout: float, purpose: str = "",
            say: Callable[[str], None] | None = None) -> Lease:
    """Lease the first free board of `boards`, waiting up to `timeout` seconds for one to come free; `say`
    hears who holds them when the wait begins and every `WAIT_REPORT_S` after."""
    try:
        lease_dir.mkdir(parents=True, exist_ok=True)
        probe = lease_dir / f".probe-{os.getpid()}"
        probe.touch()
        probe.unlink()
    except OSError as exc:
        raise LeaseError(f"lease folder {lease_dir} is not writable ({exc.strerror}): set lease_dir in the lab "
                         f"inventory or ${LEASE_DIR_ENV} to a folder this user can write") from None
    started = time.monotonic()
    deadline = started + timeout
    next_report = started
    while True:
        for board in boards:
            lock = FileLock(lease_dir / f"{board}.lock")
            try:
                lock.acquire(timeout=0)
            except Timeout:
                continue
            info = lease_dir / f"{board}.holder.json"
            info.write_text(json.dumps({"pid": os.getpid(), "host": socket.gethostname(),
                                        "since": time.strftime("%Y-%m-%dT%H:%M:%S"), "purpose": purpose}))
            return Lease(board, lock, info)
        now = time.monotonic()
        if now >= deadline:
            raise LeaseError(f"all boards matching the selector are leased ({_holders(lease_dir, boards)}); "
                             f"waited {timeout:.0f}s — free one or raise --lease-timeout")
        if say is not None and now >= next_report:
            say(f"waiting for a free board ({now - started:.0f} of {timeout:.0f} s): {_holders(lease_dir, boards)}")
            next_report = now + WAIT_REPORT_S
        time.sleep(POLL_S)


def _holders(lease_dir: Path, boards: Sequence[str]) -> str:
    parts = []
    for board in boards:
        held = holder(lease_dir, board)
        if held:
            parts.append(f"{board} held by pid {held.get('pid')} on {held.get('host')} since {held.get('since')}"
                         + (f" ({held['purpose']})" if held.get("purpose") else ""))
        else:
            parts.append(f"{board} free")
    return "; ".join(parts)
