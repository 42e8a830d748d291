"""Leasing one board of a selection from a lease store: the first free one that is not quarantined, waiting up
to a timeout for one to come free, unless every busy one is held by this same run (an xdist run's other
workers hold theirs for the whole session: waiting would only delay the "no board" line)."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from harness.errors import LeaseError, SpareWorker
from harness.lease.files import FileLeaseStore
from harness.lease.store import Held, Holder, LeaseStore

POLL_S = 0.5
#: how often a wait for a busy board says who holds it
WAIT_REPORT_S = 30.0


@dataclass
class Lease:
    """A held lease on one board; release() (or the context exit) frees it."""

    board: str
    held: Held
    store: LeaseStore

    def release(self) -> None:
        self.held.release()

    def __enter__(self) -> Lease:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def store_of(where: LeaseStore | Path) -> LeaseStore:
    return FileLeaseStore(where) if isinstance(where, Path) else where


def acquire(boards: Sequence[str], where: LeaseStore | Path, timeout: float, purpose: str = "",
            say: Callable[[str], None] | None = None, run: str = "",
            skip: Callable[[str], bool] | None = None) -> Lease:
    """Lease the first free board of `boards` (a store, or a lease folder), waiting up to `timeout` seconds for
    one to come free; `say` hears who holds them when the wait begins and every `WAIT_REPORT_S` after. A
    quarantined board is passed over until its re-check is due; so is one that `skip` rejects."""
    store = store_of(where)
    started = time.monotonic()
    deadline = started + timeout
    next_report = started
    holder = Holder(purpose=purpose, run=run)
    while True:
        usable = [b for b in boards if not _kept_out(store, b) and not (skip and skip(b))]
        if not usable:
            raise LeaseError(f"no usable board: {_holders(store, boards)}")
        for board in usable:
            held = store.try_lease(board, holder)
            if held is not None:
                return Lease(board, held, store)
        if run and all((h := store.holder(b)) is not None and h.run == run for b in usable):
            raise SpareWorker(f"no board left for this worker: {_holders(store, boards)} (this run holds them all)")
        now = time.monotonic()
        if now >= deadline:
            raise LeaseError(f"all boards matching the selector are leased ({_holders(store, boards)}); "
                             f"waited {timeout:.0f}s — free one or raise --lease-timeout")
        if say is not None and now >= next_report:
            say(f"waiting for a free board ({now - started:.0f} of {timeout:.0f} s): {_holders(store, boards)}")
            next_report = now + WAIT_REPORT_S
        time.sleep(POLL_S)


def _kept_out(store: LeaseStore, board: str) -> bool:
    quarantine = store.quarantined(board)
    return quarantine is not None and not quarantine.due()


def holder(where: LeaseStore | Path, board: str) -> Holder | None:
    """Who holds `board` now, or None when it is free."""
    return store_of(where).holder(board)


def _holders(store: LeaseStore, boards: Sequence[str]) -> str:
    parts = []
    for board in boards:
        quarantine = store.quarantined(board)
        held = store.holder(board)
        if quarantine is not None and not quarantine.due():
            parts.append(f"{board} quarantined since {quarantine.since}: {quarantine.reason}")
        elif held:
            parts.append(f"{board} held by {held.describe()}")
        else:
            parts.append(f"{board} free")
    return "; ".join(parts)
