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
from harness.board.health import health_problems
from harness.board.state import DEFAULT_TIMEOUT_S as DEFAULT_WATCHDOG_S
from harness.errors import ConfigError, HarnessError
from harness.inventory import BoardEntry, Lab, LocalTransportConfig, SshTransportConfig, load_lab
from harness.lease import LeaseStore, acquire
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
                purpose: str = "", say: Callable[[str], None] | None = None, run: str = "",
                health_check: bool = False) -> Iterator[BoardEntry]:
    """Yield the inventory entry of a board leased for this block (or one a provider brought); `say` hears
    about a wait for a busy board. With `health_check`, a leased board is checked first (`harness.board.health`);
    one that fails is power-cycled once when it can be, else quarantined, and the next matching board is tried.
    `run` names the run this lease belongs to (xdist's workers of one run share it)."""
    provided = provider_for(selector)
    if provided is not None:
        provider, argument = provided
        with provider(argument) as entry:
            yield entry
        return
    candidates = lab.select(selector, all_profiles())
    store = lab.leases()
    unhealthy: set[str] = set()
    while True:
        with acquire([b.name for b in candidates], store, lease_timeout, purpose, say, run,
                     skip=unhealthy.__contains__) as lease:
            entry = next(b for b in candidates if b.name == lease.board)
            if not health_check or _fit(entry, lab, store, run, say or (lambda _: None)):
                yield entry
                return
            unhealthy.add(entry.name)


def _fit(entry: BoardEntry, lab: Lab, store: LeaseStore, run: str, say: Callable[[str], None]) -> bool:
    """Health-check a leased board; one that fails goes through `recover`. A quarantined board whose re-check was
    due and passes is out of quarantine."""
    problems = _health(entry)
    if problems:
        return recover(entry, lab, store, run, "health check: " + "; ".join(problems), say)
    if store.quarantined(entry.name) is not None:
        store.release_quarantine(entry.name)
        say(f"{entry.name}: passed its re-check, out of quarantine")
    return True


def recover(entry: BoardEntry, lab: Lab, store: LeaseStore, run: str, reason: str,
            say: Callable[[str], None]) -> bool:
    """A board failed for an infrastructure reason (unhealthy, unreachable, lost mid-run): power-cycle it once
    when its inventory entry can, and check it again. It is quarantined when it is still unfit, or when this is
    the `quarantine_after`-th session in a row that failed this way. True: it is fit to use now."""
    problems = [reason]
    if entry.power_cycle:
        say(f"{entry.name}: {reason}; power-cycling it once")
        problems = _health(entry, cycle_first=True)
    record = store.record_run(entry.name, run, reason, infra_failure=True)
    if not problems and record.infra_failures < lab.quarantine_after:
        return True
    why = "; ".join(problems) if problems else (f"{record.infra_failures} sessions in a row failed for "
                                                f"infrastructure reasons, the last: {reason}")
    store.quarantine(entry.name, why, lab.quarantine_recheck_s)
    say(f"{entry.name}: quarantined ({why}); `hil devices --release {entry.name}` once it is fixed")
    return False


def _health(entry: BoardEntry, cycle_first: bool = False) -> list[str]:
    transport = transport_for(entry)
    board = Board(entry.name, get_profile(entry.profile), transport, entry.power_cycle)
    try:
        if cycle_first:
            board.power_cycle()
        else:
            transport.connect()
        return health_problems(board)
    except HarnessError as exc:
        return [f"unreachable: {exc}"]
    finally:
        transport.close()


@contextlib.contextmanager
def connected_board(entry: BoardEntry, watchdog_s: float = DEFAULT_WATCHDOG_S) -> Iterator[Board]:
    """A connected Board for a leased entry whose identity matches its profile, disconnected after. On entry
    the board is settled (what a dead session left is restored, see `harness.board.state`); on exit every
    change made through `board.state` is undone."""
    transport = transport_for(entry)
    try:
        transport.connect()
        board = Board(entry.name, get_profile(entry.profile), transport, entry.power_cycle, watchdog_s,
                      backend=entry.backend)
        board.check_identity()
        board.state.settle()
        try:
            yield board
        finally:
            _put_back(board, watchdog_s)
    finally:
        transport.close()


def _put_back(board: Board, watchdog_s: float) -> None:
    """Undo the session's changes; a board lost mid-run is left to its watchdog, which restores its journal when
    the board is back (`harness.board.state`): nothing more is sent to it."""
    if board.lost is not None:
        return
    try:
        board.state.restore()
    except HarnessError as exc:
        raise HarnessError(f"{board.name}: could not put the board back ({exc}); its watchdog restores the "
                           f"journaled state within {watchdog_s:.0f} s of this harness's last heartbeat") from exc


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
