"""From a --device selector to a connected, leased Board.

Selectors: a board name, a profile name (any free board of it) or `tag:X`, looked up in the lab
inventory; or `<prefix>:<arg>` for a registered board provider (a provider brings boards that are
not in the inventory, and takes them away afterwards).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator
from pathlib import Path

from harness.board import Board
from harness.board.state import DEFAULT_TIMEOUT_S as DEFAULT_WATCHDOG_S
from harness.errors import ConfigError, HarnessError
from harness.inventory import BoardEntry, Lab, LocalTransportConfig, SshTransportConfig, load_lab
from harness.lease import acquire
from harness.profiles import all_profiles, get_profile
from harness.transport.base import Transport
from harness.transport.local import LocalTransport
from harness.transport.ssh import SshTransport

LAB_ENV = "JETSON_HIL_LAB"
DEFAULT_LAB = Path("lab.yaml")
DEFAULT_LEASE_TIMEOUT_S = 600.0

#: prefix -> factory(argument) giving a context manager that yields one BoardEntry while it lives
BoardProvider = Callable[[str], contextlib.AbstractContextManager[BoardEntry]]
_PROVIDERS: dict[str, BoardProvider] = {}


def register_provider(prefix: str, provider: BoardProvider) -> None:
    """Let a plugin serve `--device <prefix>:<arg>` selectors."""
    _PROVIDERS[prefix] = provider


def lab_path(explicit: str | Path | None) -> Path | None:
    """The inventory to use: --lab, else $JETSON_HIL_LAB, else ./lab.yaml when it exists."""
    if explicit:
        return Path(explicit)
    if os.environ.get(LAB_ENV):
        return Path(os.environ[LAB_ENV])
    return DEFAULT_LAB if DEFAULT_LAB.is_file() else None


def load_inventory(path: str | Path | None) -> Lab:
    """The lab inventory, or an empty one when there is none."""
    found = lab_path(path)
    if found is None:
        return Lab(source="(no lab.yaml: pass --lab or set $JETSON_HIL_LAB)")
    if not found.is_file():
        raise ConfigError(found, "", "lab inventory not found")
    return load_lab(found, all_profiles())


def transport_for(entry: BoardEntry) -> Transport:
    config = entry.transport
    if isinstance(config, SshTransportConfig):
        return SshTransport(host=config.host, port=config.port, user=config.user, key_file=config.key,
                            known_hosts=config.known_hosts, trust_on_first_use=config.trust_on_first_use,
                            connect_timeout=config.connect_timeout, name=entry.name)
    assert isinstance(config, LocalTransportConfig)
    return LocalTransport(name=entry.name)


def provider_for(selector: str) -> tuple[BoardProvider, str] | None:
    prefix, sep, argument = selector.partition(":")
    if sep and prefix in _PROVIDERS:
        return _PROVIDERS[prefix], argument
    return None


@contextlib.contextmanager
def board_entry(selector: str, lab: Lab, lease_timeout: float = DEFAULT_LEASE_TIMEOUT_S,
                purpose: str = "", say: Callable[[str], None] | None = None) -> Iterator[BoardEntry]:
    """Yield the inventory entry of a board leased for this block (or one a provider brought); `say` hears
    about a wait for a busy board."""
    provided = provider_for(selector)
    if provided is not None:
        provider, argument = provided
        with provider(argument) as entry:
            yield entry
        return
    candidates = lab.select(selector, all_profiles())
    with acquire([b.name for b in candidates], lab.lease_folder(), lease_timeout, purpose, say) as lease:
        yield next(b for b in candidates if b.name == lease.board)


@contextlib.contextmanager
def connected_board(entry: BoardEntry, watchdog_s: float = DEFAULT_WATCHDOG_S) -> Iterator[Board]:
    """A connected Board for a leased entry whose identity matches its profile, disconnected after. On entry
    the board is settled (what a dead session left is restored, see `harness.board.state`); on exit every
    change made through `board.state` is undone."""
    transport = transport_for(entry)
    try:
        transport.connect()
        board = Board(entry.name, get_profile(entry.profile), transport, entry.power_cycle, watchdog_s)
        board.check_identity()
        board.state.settle()
        try:
            yield board
        finally:
            try:
                board.state.restore()
            except HarnessError as exc:
                raise HarnessError(f"{entry.name}: could not put the board back ({exc}); its watchdog restores the "
                                   f"journaled state within {watchdog_s:.0f} s of this harness's last heartbeat"
                                   ) from exc
    finally:
        transport.close()


@contextlib.contextmanager
def open_board(selector: str, lab: Lab, lease_timeout: float = DEFAULT_LEASE_TIMEOUT_S,
               purpose: str = "", watchdog_s: float = DEFAULT_WATCHDOG_S) -> Iterator[Board]:
    """`board_entry` and `connected_board` in one: a board for `selector`, leased and connected for the block."""
    with board_entry(selector, lab, lease_timeout, purpose) as entry, connected_board(entry, watchdog_s) as board:
        yield board


def load_providers() -> None:
    """Import the board providers shipped with the harness (they register themselves)."""
    from importlib.metadata import entry_points

    for ep in entry_points(group="jetson_hil.providers"):
        ep.load()
