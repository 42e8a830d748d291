"""pytest plugin: select a board with --device, lease and connect it once per session.

Registered through the `pytest11` entry point, so `pytest suites --device=xavier-nx` works from
anywhere once jetson-hil is installed. Without --device the plugin stays out of the way.
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Iterator
from pathlib import Path

import pytest

import harness
from harness.board import Board
from harness.errors import HarnessError
from harness.lab import DEFAULT_LEASE_TIMEOUT_S, load_inventory, load_providers, open_board, provider_for
from harness.profiles import DeviceProfile, all_profiles, get_profile

_BROKEN = pytest.StashKey[str]()


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


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "requires(*capabilities): skip unless the board's profile has them "
                                       "(fp16, int8, dla, cores>=N)")
    config.addinivalue_line("markers", "power_modes(*modes): power modes a test runs in")
    load_providers()


def selected_profile(config: pytest.Config) -> DeviceProfile | None:
    """The profile a selector names, without connecting (for capability skips)."""
    selector = config.getoption("--device")
    if not selector:
        return None
    provided = provider_for(selector)
    if provided is not None:
        return get_profile(provided[1])
    if selector in all_profiles():
        return get_profile(selector)
    boards = load_inventory(config.getoption("--lab")).select(selector, all_profiles())
    return get_profile(boards[0].profile)


def pytest_runtest_setup(item: pytest.Item) -> None:
    """Skip the rest of the session once the board proved unreachable (labgrid's 'broken strategy')."""
    broken = item.config.stash.get(_BROKEN, None)
    if broken and "board" in getattr(item, "fixturenames", ()):
        pytest.skip(f"board unavailable: {broken}")


@pytest.fixture(scope="session")
def device_profile(request: pytest.FixtureRequest) -> DeviceProfile:
    """The DeviceProfile of the selected board."""
    try:
        profile = selected_profile(request.config)
    except HarnessError as exc:
        pytest.fail(str(exc), pytrace=False)
    if profile is None:
        pytest.skip("no board selected: pass --device NAME|PROFILE|tag:X (see `hil devices`)")
    return profile


@pytest.fixture(scope="session")
def board(request: pytest.FixtureRequest, device_profile: DeviceProfile,
          record_testsuite_property) -> Iterator[Board]:
    """A connected Board leased for the whole session."""
    config = request.config
    stack = contextlib.ExitStack()
    try:
        lab = load_inventory(config.getoption("--lab"))
        connected = stack.enter_context(open_board(config.getoption("--device"), lab,
                                                   config.getoption("--lease-timeout"), purpose="pytest"))
    except HarnessError as exc:
        stack.close()
        config.stash[_BROKEN] = str(exc)
        pytest.fail(f"board {config.getoption('--device')!r} unavailable, skipping the rest: {exc}",
                    pytrace=False)
    with stack:
        for key, value in _provenance(connected).items():
            record_testsuite_property(key, value)
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
