"""`--device virtual:PROFILE`: start a virtual board for the session (or reuse a running one)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from harness.inventory import BoardEntry
from harness.lab import register_provider
from harness.lease import acquire, default_lease_dir
from harness.virtual import boards


@contextlib.contextmanager
def virtual_board(profile: str) -> Iterator[BoardEntry]:
    """Lease `virtual-PROFILE`, start it unless it already runs, and stop it afterwards if we started it."""
    name = f"virtual-{profile}"
    with acquire([name], default_lease_dir(), timeout=600, purpose="virtual board"):
        already = boards.find(name)
        running = already is not None and already.status == "running"
        board = boards.up(profile, name)
        try:
            yield board.entry()
        finally:
            if not running:
                boards.down(name)


register_provider("virtual", virtual_board)
