"""pytest plugin: select a board with --device, lease and connect it once per session.

Registered through the `pytest11` entry point, so `pytest suites --device=xavier-nx` works from
anywhere once jetson-hil is installed. Without --device the plugin stays out of the way.

A farm: with `-n N` (pytest-xdist) every worker leases a board of its own for the whole session and runs every
test on it (xdist's `each` scheduling, chosen here whatever `--dist` says: `load` would spread one board's suite
over several boards and compare nothing). The controller leases nothing. A board is health-checked before a
session uses it; one that stops answering mid-run fails its remaining tests with one reason and is quarantined
(see `harness.lab.board_entry`, `harness.lease`).
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
from harness.errors import HarnessError, SpareWorker
from harness.inventory import BoardEntry
from harness.lab import (
    DEFAULT_LEASE_TIMEOUT_S,
    board_entry,
    connected_board,
    load_inventory,
    load_providers,
    provider_for,
    recover,
)
from harness.profiles import DeviceProfile, all_profiles, get_profile
from harness.results import read_differences

_BROKEN = pytest.StashKey[str]()
_REPORTED = pytest.StashKey[bool]()
_LEASED = pytest.StashKey[tuple[BoardEntry, contextlib.ExitStack]]()
_NO_BOARD = pytest.StashKey[str]()
_LOST = pytest.StashKey[str]()
_LOST_PREFIX = "board lost mid-run"  # what every test of a lost board fails with
_CONNECTED = pytest.StashKey[Board]()
_RUN_NAME = pytest.StashKey[str]()


def name_run(config: pytest.Config, name: str) -> None:
    """What the board's record in the lease store calls this session's run (the suites' run folder)."""
    config.stash[_RUN_NAME] = name


def is_controller(config: pytest.Config) -> bool:
    """The xdist controller of a farm run: its workers lease and run, it only gathers."""
    return getattr(config.option, "dist", "no") != "no" and not hasattr(config, "workerinput")


def _run_tag(config: pytest.Config) -> str:
    """What this run's workers share (xdist's testrunuid); empty outside xdist."""
    return str(getattr(config, "workerinput", {}).get("testrunuid", ""))


def leased_entry(config: pytest.Config) -> BoardEntry | None:
    """The inventory entry of the board this session (or farm worker) leased, if any."""
    leased = config.stash.get(_LEASED, None)
    return leased[0] if leased is not None else None


def board_lost(config: pytest.Config) -> str | None:
    """Why the session's board was lost mid-run, or None."""
    return config.stash.get(_LOST, None)


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
    group.addoption("--no-health-check", action="store_true",
                    help="use a leased board without checking its health first (disk, memory, leftover faults, "
                         "temperature, clock)")
    group.addoption("--watchdog-timeout", default=DEFAULT_WATCHDOG_S, type=float, metavar="SECONDS",
                    help="the board restores what this session changed once the harness has been silent this "
                         "long (killed, link cut, board rebooted) (default: %(default)s)")
    group.addoption("--backend", default=None, choices=("auto", "tensorrt", "onnxruntime"),
                    help="what runs the model on the board: auto (TensorRT, refused where the board lacks it), "
                         "tensorrt, or onnxruntime (on the board's CPU, only when asked) (default: the board's "
                         "`backend:` in lab.yaml, else auto)")


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


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config: pytest.Config, log: object) -> object | None:
    """Every test on every board: a worker per board, each running the whole selection."""
    if not config.getoption("--device"):
        return None
    from xdist.scheduler import EachScheduling

    return EachScheduling(config, log)


def pytest_sessionstart(session: pytest.Session) -> None:
    """Lease the board before tests are generated: they are built from the leased board's profile (a `tag:`
    selector may span profiles), and a board that cannot be leased is reported once, by the board fixture.
    A farm worker left without a board because its own run holds them all (more workers than boards) skips its
    tests with one line; no board at all (busy elsewhere past --lease-timeout, quarantined, unreachable) fails
    the first test with the reason and skips the rest."""
    config = session.config
    selector = config.getoption("--device")
    if not selector or is_controller(config):
        return
    stack = contextlib.ExitStack()
    try:
        lab = load_inventory(config.getoption("--lab"))
        entry = stack.enter_context(board_entry(selector, lab, config.getoption("--lease-timeout"),
                                                purpose="pytest", say=_say, run=_run_tag(config),
                                                health_check=not (config.getoption("--no-health-check")
                                                                  or config.option.collectonly)))
    except SpareWorker as exc:  # the run's other workers have every usable board: nothing wrong, nothing to do
        stack.close()
        config.stash[_NO_BOARD] = str(exc)
        _say(f"{config.workerinput.get('workerid')}: no board: {exc}")
        return
    except HarnessError as exc:
        stack.close()
        config.stash[_BROKEN] = str(exc)
        return
    config.stash[_LEASED] = (entry, stack)
    if hasattr(config, "workerinput") and config.getoption("xmlpath", None):
        _board_junit(config, entry.name)


def _board_junit(config: pytest.Config, board: str) -> None:
    """A farm worker's own JUnit file beside --junitxml, `junit-<board>.xml`: the board's verdicts with its
    provenance (xdist's controller writes one file of every worker's cases, but without their properties)."""
    from _pytest.junitxml import LogXML, xml_key

    path = Path(config.getoption("xmlpath")).with_name(f"junit-{board}.xml")
    xml = LogXML(str(path), config.option.junitprefix, config.getini("junit_suite_name"),
                 config.getini("junit_logging"), config.getini("junit_duration_report"),
                 config.getini("junit_family"), config.getini("junit_log_passing_tests"))
    config.stash[xml_key] = xml
    config.pluginmanager.register(xml)
    xml.pytest_sessionstart()


@pytest.hookimpl(trylast=True)
def pytest_sessionfinish(session: pytest.Session) -> None:
    """The board's record in the lease store (how its session went: a lost board counts against it and is
    quarantined), then the lease goes, last: after the session's fixtures put the board back (also when a run
    stops early)."""
    config = session.config
    leased = config.stash.get(_LEASED, None)
    if leased is None:
        return
    entry, stack = leased
    lost = board_lost(config)
    try:
        lab = load_inventory(config.getoption("--lab"))
        store = lab.leases()
        run = config.stash.get(_RUN_NAME, "") or _run_tag(config) or f"pid {os.getpid()}"
        if lost:
            recover(entry, lab, store, run, f"lost mid-run: {lost}", _say)
        else:
            store.record_run(entry.name, run, "completed", infra_failure=False)
    except HarnessError as exc:  # a store that went away must not keep the lease
        _say(f"{entry.name}: could not record the session in the lease store: {exc}")
    finally:
        stack.close()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo) -> Iterator[None]:
    """After a failure on a board, ask whether the board still answers (a new connection, a bounded wait):
    one that does not is lost, and the session's remaining tests fail with that one reason, fixture teardowns
    that then fail to reach it included."""
    outcome = yield
    report = outcome.get_result()
    config = item.config
    board = config.stash.get(_CONNECTED, None)
    if not report.failed or board is None:
        return
    reason = board_lost(config)
    if reason is None:
        reason = _unreachable(board)
        if reason is None:
            return
        config.stash[_LOST] = reason
        board.lost = reason
        _say(f"{board.name}: lost mid-run ({reason}); its remaining tests fail")
    failed_with = report.longreprtext.strip().splitlines()[-1:] or ["?"]
    if not failed_with[0].startswith(_LOST_PREFIX):
        report.longrepr = f"{_LOST_PREFIX}: {reason} (the test then failed with: {failed_with[0][:300]})"


def _unreachable(board: Board) -> str | None:
    probe = board.transport.duplicate()
    try:
        probe.connect()
        probe.run("true", timeout=10).check()
    except HarnessError as exc:
        return str(exc)
    finally:
        probe.close()
    return None


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
    """Skip the rest of the session once the board proved unreachable (labgrid's 'broken strategy'); fail the
    rest with the reason once it was lost mid-run; skip all on a farm worker that got no board."""
    uses_board = "board" in getattr(item, "fixturenames", ())
    no_board = item.config.stash.get(_NO_BOARD, None)
    if no_board and uses_board:
        pytest.skip(f"no board for this worker: {no_board}")
    lost = board_lost(item.config)
    if lost and uses_board:
        pytest.fail(f"{_LOST_PREFIX}: {lost}", pytrace=False)
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
    config.stash[_CONNECTED] = connected
    with stack:
        for key, value in _provenance(connected).items():
            record_testsuite_property(key, value)
        _say_readiness(config, connected, record_testsuite_property)
        for message in connected.state.settled:
            record_testsuite_property("settled", message)
            warnings.warn(f"{connected.name}: {message}", pytest.PytestWarning, stacklevel=1)
        yield connected


def _say_readiness(config: pytest.Config, board: Board, record_testsuite_property) -> None:
    """The board's stack and the backend the module will use, in one line before the first test (the deploy
    refuses a board that is not ready, with the same line)."""
    from harness.deploy.readiness import readiness_of  # the deployers import the board layer, not the plugin

    try:
        line = readiness_of(board, config.getoption("--backend")).line()
    except HarnessError as exc:
        line = str(exc)
    record_testsuite_property("board_stack", line)
    terminal = config.pluginmanager.get_plugin("terminalreporter")
    capture = config.pluginmanager.get_plugin("capturemanager")
    if hasattr(config, "workerinput") or terminal is None or capture is None:  # as a lost board is said
        _say(f"{board.name}: {line}")
        return
    with capture.global_and_fixture_disabled():  # the fixture is set up inside the first test's capture
        terminal.write_line(f"jetson-hil: {board.name}: {line}")


def _provenance(board: Board) -> dict[str, str]:
    """JUnit testsuite properties: which board, software and harness produced these results."""
    facts = {"board": board.name, "profile": board.profile.name, "transport": board.transport.target,
             "harness_version": harness.__version__}
    try:  # a virtual board's userspace, where it is not its JetPack's: no result may pass for a real board's
        differs = read_differences(board)
    except HarnessError as exc:
        differs = [f"unknown ({exc})"]
    if differs:
        facts["differs_from_jetpack"] = "; ".join(differs)
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
