"""`--device virtual:PROFILE[:ARCH]`: start a virtual board for the session (or reuse a running one); ARCH
another than this machine's (arm64 on x86_64) runs it under qemu-user."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from harness.inventory import BoardEntry
from harness.lab import register_provider
from harness.lease import acquire, default_lease_dir
from harness.virtual import boards


@contextlib.contextmanager
def virtual_board(argument: str) -> Iterator[BoardEntry]:
    """Lease `virtual-PROFILE[-ARCH]`, start it unless it already runs, and stop it afterwards if we started it."""
    profile, _, arch = argument.partition(":")
    name = boards.default_name(profile, arch or None)
    with acquire([name], default_lease_dir(), timeout=600, purpose="virtual board"):
        already = boards.find(name)
        running = already is not None and already.status == "running"
        board = boards.up(profile, name, arch or None)
        try:
            yield board.entry()
        finally:
            if not running:
                boards.down(name)


register_provider("virtual", virtual_board)
