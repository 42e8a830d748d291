"""pytest plugin: select a board with --device, lease and connect it once per session.

Registered through the `pytest11` entry point, so `pytest suites --device=xavier-nx` works from
anywhere once jetson-hil is installed. Without --device the plugin stays out of the way.
"""

from __future__ import annotations

import contextlib
import os
import sys
import warnings
from collections.abc import Iterator
from pathlib import Path

import pytest

import harness
from harness.board import Board
from harness.board.state import DEFAULT_TIMEOUT_S as DEFAULT_WATCHDOG_S
from harness.errors import HarnessError
from harness.inventory import BoardEntry
from harness.lab import (
    DEFAULT_LEASE_TIMEOUT_S,
    board_entry,
    connected_board,
    load_inventory,
    load_providers,
    provider_for,
)
from harness.profiles import DeviceProfile, all_profiles, get_profile

_BROKEN = pytest.StashKey[str]()
_REPORTED = pytest.StashKey[bool]()
_LEASED = pytest.StashKey[tuple[BoardEntry, contextlib.ExitStack]]()


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("jetson-hil", "jetson-hil board selection")
    group.addoption("--device", default=None, metavar="SELECTOR",
                    help="board to run on: a board name, a profile name (any free board of it), "
                         "tag:X, or a provider selector such as virtual:PROFILE")
    group.addoption("--lab", default=None, metavar="LAB_YAML",
                    help="lab inventory file (default: $JETSON_HIL_LAB, else ./lab.yaml)")
    group.addoption("--report-dir", default="reports", metavar="DIR",
                    help="where results and reports are written (default: reports/)")
    group.addoption("--power-mode", default="default,max", metavar="MODES",
                    help="power modes to measure: comma-separated ids or names, 'default', 'max' "
                         "or 'all' (default: default,max)")
    group.addoption("--lease-timeout", default=DEFAULT_LEASE_TIMEOUT_S, type=float, metavar="SECONDS",
                    help="how long to wait for a free board (default: %(default)s)")
    group.addoption("--watchdog-timeout", default=DEFAULT_WATCHDOG_S, type=float, metavar="SECONDS",
                    help="the board restores what this session changed once the harness has been silent this "
                         "long (killed, link cut, board rebooted) (default: %(default)s)")


class _CurrentJunit:
    """On a board, keep --junitxml current: after every test the file is rewritten whole, so a run killed with
    SIGKILL leaves a complete junit.xml of what it did (pytest itself writes it only at the end of a session)."""

    def __init__(self, config: pytest.Config) -> None:
        self.config = config

    @pytest.hookimpl(trylast=True)
    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        from _pytest.junitxml import xml_key  # pytest's LogXML: its own end-of-session writer, pointed elsewhere

        xml = self.config.stash.get(xml_key, None)
        if report.when != "teardown" or xml is None:
            return
        final = xml.logfile
        xml.logfile = f"{final}.partial"
        try:
            xml.pytest_sessionfinish()
            os.replace(xml.logfile, final)
        except OSError as exc:
            with contextlib.suppress(OSError):
                os.unlink(xml.logfile)
            warnings.warn(f"cannot keep {final} current: {exc.strerror or exc}", pytest.PytestWarning, stacklevel=1)
        finally:
            xml.logfile = final


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "requires(*capabilities): skip unless the board's profile has them "
                                       "(fp16, int8, dla, cores>=N)")
    config.addinivalue_line("markers", "power_modes(*modes): power modes a test runs in")
    load_providers()
    if config.getoption("--device") and config.getoption("xmlpath", None):
        config.pluginmanager.register(_CurrentJunit(config), "jetson-hil-current-junit")


def pytest_sessionstart(session: pytest.Session) -> None:
    """Lease the board before tests are generated: they are built from the leased board's profile (a `tag:`
    selector may span profiles), and a board that cannot be leased is reported once, by the board fixture."""
    config = session.config
    selector = config.getoption("--device")
    if not selector:
        return
    stack = contextlib.ExitStack()
    try:
        lab = load_inventory(config.getoption("--lab"))
        entry = stack.enter_context(board_entry(selector, lab, config.getoption("--lease-timeout"),
                                                purpose="pytest", say=_say))
    except HarnessError as exc:
        stack.close()
        config.stash[_BROKEN] = str(exc)
        return
    config.stash[_LEASED] = (entry, stack)


@pytest.hookimpl(trylast=True)
def pytest_sessionfinish(session: pytest.Session) -> None:
    """The lease goes last: after the session's fixtures put the board back (also when a run stops early)."""
    leased = session.config.stash.get(_LEASED, None)
    if leased is not None:
        leased[1].close()


def _say(message: str) -> None:
    print(f"jetson-hil: {message}", file=sys.stderr, flush=True)


def selected_profile(config: pytest.Config) -> DeviceProfile | None:
    """The leased board's profile; without a leased board, the profile a selector names (for capability
    skips of tests that need no board), else None."""
    leased = config.stash.get(_LEASED, None)
    if leased is not None:
        return get_profile(leased[0].profile)
    selector = config.getoption("--device")
    if not selector:
        return None
    provided = provider_for(selector)
    if provided is not None and provided[1] in all_profiles():
        return get_profile(provided[1])
    return get_profile(selector) if selector in all_profiles() else None


def pytest_runtest_setup(item: pytest.Item) -> None:
    """Skip the rest of the session once the board proved unreachable (labgrid's 'broken strategy')."""
    broken = item.config.stash.get(_BROKEN, None)
    if broken and "board" in getattr(item, "fixturenames", ()) and item.config.stash.get(_REPORTED, False):
        pytest.skip(f"board unavailable: {broken}")


@pytest.fixture(scope="session")
def device_profile(request: pytest.FixtureRequest) -> DeviceProfile:
    """The DeviceProfile of the leased board (or of the profile --device names)."""
    profile = selected_profile(request.config)
    if profile is None:
        broken = request.config.stash.get(_BROKEN, None)
        if broken:
            pytest.fail(broken, pytrace=False)
        pytest.skip("no board selected: pass --device NAME|PROFILE|tag:X (see `hil devices`)")
    return profile


@pytest.fixture(scope="session")
def board(request: pytest.FixtureRequest, record_testsuite_property) -> Iterator[Board]:
    """The leased board, connected for the whole session."""
    config = request.config
    selector = config.getoption("--device")
    if not selector:
        pytest.skip("no board selected: pass --device NAME|PROFILE|tag:X (see `hil devices`)")
    leased = config.stash.get(_LEASED, None)
    stack = contextlib.ExitStack()
    broken = config.stash.get(_BROKEN, "no board was leased") if leased is None else None
    if leased is not None:
        try:
            connected = stack.enter_context(connected_board(leased[0], config.getoption("--watchdog-timeout")))
        except HarnessError as exc:
            stack.close()
            broken = str(exc)
    if broken is not None:  # failed outside the except: one line, not a chain of two
        config.stash[_BROKEN] = broken
        config.stash[_REPORTED] = True
        pytest.fail(f"board {selector!r} unavailable, skipping the rest: {broken}", pytrace=False)
    with stack:
        for key, value in _provenance(connected).items():
            record_testsuite_property(key, value)
        for message in connected.state.settled:
            record_testsuite_property("settled", message)
            warnings.warn(f"{connected.name}: {message}", pytest.PytestWarning, stacklevel=1)
        yield connected


def _provenance(board: Board) -> dict[str, str]:
    """JUnit testsuite properties: which board, software and harness produced these results."""
    facts = {"board": board.name, "profile": board.profile.name, "transport": board.transport.target,
             "harness_version": harness.__version__}
    try:
        identity = board.identity()
    except HarnessError as exc:
        warnings.warn(f"{board.name}: identity unreadable, provenance incomplete: {exc}", stacklevel=2)
        return facts
    facts.update(model=identity.model, part_number=identity.part_number or "unknown",
                 l4t=str(identity.l4t or "unknown"), jetpack=identity.jetpack or "unknown")
    return facts


@pytest.fixture(autouse=True)
def _requires_capabilities(request: pytest.FixtureRequest) -> None:
    """@pytest.mark.requires("int8"): skip with a reason when the board's profile lacks a capability."""
    marker = request.node.get_closest_marker("requires")
    if marker is None:
        return
    profile: DeviceProfile = request.getfixturevalue("device_profile")
    missing = [cap for cap in marker.args if not profile.supports(cap)]
    if missing:
        pytest.skip(f"{profile.name} lacks {', '.join(missing)}")


@pytest.fixture(scope="session")
def report_dir(request: pytest.FixtureRequest) -> Path:
    path = Path(request.config.getoption("--report-dir"))
    path.mkdir(parents=True, exist_ok=True)
    return path
