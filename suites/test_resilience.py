"""Offline resilience: the board's uplink is cut, flapped, degraded, and the module killed or the board rebooted
while it is down; every detection the module produced must reach the broker once the link is back.

The uplink is the lab's broker (`uplink:` in lab.yaml, per lab or per board) or mosquitto started on this host
for the module. The harness subscribes (QoS 1, persistent session) and records every delivery: the actual
stream. The module says what it produced through its API (`/uplink`: seq ranges per run, drops on overflow):
the expected stream. The verdict (`harness.uplink.verdict`) passes a case with no message missing, unexpected
or out of order after dedup; duplicates are a figure. Durations scale with --outage-scale (seconds per minute
of Microsoft's IoT Edge matrix; 60 runs its minutes). Each case writes `resilience/<test>.csv`, a per-second
timeline, next to results.csv.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from harness.board import Board
from harness.deploy import ModuleHandle, ServiceSpec
from harness.deploy.methods import Deployer, DeployTarget, deployer_for
from harness.errors import HarnessError
from harness.faults import DegradedLink, Fault, LinkCut
from harness.faults.link_cut import rules
from harness.lab import load_inventory
from harness.resilience import Cycles, OutageRun, Outcome, flapping, matrix, single_outage
from harness.resilience.plan import DEGRADED, OVERFLOW_FACTOR, OVERFLOW_OUTBOX
from harness.results import ResultsWriter, RowContext
from harness.uplink import Collector
from harness.uplink.endpoint import UplinkEndpoint, uplink_endpoint

#: during an outage the module must keep detecting at this share of its online FPS
OFFLINE_FPS_SHARE = 0.9
#: the module's frame rate in these cases (a camera's), so that FPS online and offline compare like for like
FPS_CAP = 15.0
#: outbox bound of the regular cases: room for the longest outage at any scale (30 min at 15 FPS is 27,000)
OUTBOX_MAX = 100_000
#: an outbox's disk may hold this many bytes per message it is bounded to, plus its WAL (SQLite's default
#: autocheckpoint keeps that near 1000 pages of 4 KiB)
OUTBOX_BYTES_PER_MESSAGE, WAL_BYTES = 4096, 8 * 1024 * 1024


class Uplinked:
    """The module publishing to the uplink, the harness subscribed, and a way to run a case on them."""

    def __init__(self, board: Board, deployer: Deployer, endpoint: UplinkEndpoint, collector: Collector,
                 run_dir: Path, say: Callable[[str], None], backend: str | None) -> None:
        self.board, self.deployer, self.endpoint, self.collector = board, deployer, endpoint, collector
        self.run_dir, self.say, self.backend = run_dir, say, backend
        self.outbox_max = OUTBOX_MAX
        self.handle = self.deploy(OUTBOX_MAX)

    def spec(self, outbox_max: int) -> ServiceSpec:
        return ServiceSpec(sink=self.endpoint.sink_url, fps_cap=FPS_CAP, backend=self.backend,
                           extra=("--outbox-max", str(outbox_max)))

    def deploy(self, outbox_max: int) -> ModuleHandle:
        """The module with this outbox bound (a no-op when it already runs so)."""
        self.outbox_max = outbox_max
        self.handle = self.deployer.deploy(self.spec(outbox_max))
        return self.handle

    def cut(self) -> LinkCut:
        return LinkCut(self.board, self.endpoint.board_address, self.endpoint.port)

    def run(self, name: str, fault: Fault, plan: Cycles,
            during: Callable[[OutageRun, float], None] | None = None) -> Outcome:
        slug = re.sub(r"[^A-Za-z0-9_.-]+", "_", name)
        case = OutageRun(self.board, self.handle, self.collector, fault, say=self.say,
                         timeline=self.run_dir / "resilience" / f"{slug}.csv",
                         drain_timeout_s=max(60.0, 2 * plan.offline_s))
        try:
            case.cycles(plan, during)
        except BaseException:
            case.abort()
            raise
        return case.finish()


def _say(request: pytest.FixtureRequest, board: Board) -> Callable[[str], None]:
    """Progress lines on the terminal while a case runs (a case takes minutes at lab scale)."""
    capture = request.config.pluginmanager.get_plugin("capturemanager")
    reporter = request.config.pluginmanager.get_plugin("terminalreporter")

    def say(text: str) -> None:
        if reporter is None:
            return
        with capture.global_and_fixture_disabled() if capture is not None else contextlib.nullcontext():
            reporter.write_line(f"  {board.name}: {text}")

    return say


def _board_picture(board: Board, handle: ModuleHandle) -> dict[str, str]:
    """What the suite must leave as it found: our fault rules, the qdiscs, the module's state."""
    qdiscs = board.transport.run("tc qdisc show 2>/dev/null", timeout=15).stdout.strip()
    return {"fault rules": rules(board) or "none", "qdiscs": qdiscs,
            "module": str(handle.api("/health").get("status"))}


@pytest.fixture(scope="module")
def uplink_setup(request: pytest.FixtureRequest, board: Board, deployed: ModuleHandle, deploy_target: DeployTarget,
                 deploy_method: str, service_backend: str | None, run_dir: Path,
                 record_testsuite_property) -> Iterator[Uplinked | str]:
    """The uplink and the module on it for this file; the reason as a string when it cannot be had (reported
    once by the first test, the others skip). On the way out the module runs again as the other suites use it,
    and the board's fault rules, qdiscs and module state must be as they were."""
    before = _board_picture(board, deployed)
    say = _say(request, board)
    lab = load_inventory(request.config.getoption("--lab"))
    leased = next((b for b in lab.boards if b.name == board.name), None)
    stack = contextlib.ExitStack()
    try:
        endpoint = stack.enter_context(uplink_endpoint(board, lab.uplink_for(leased) if leased else lab.uplink,
                                                       run_dir / "broker"))
        say(f"uplink: {endpoint.describe()}")
        record_testsuite_property("uplink", endpoint.describe())
        collector = Collector(*endpoint.local, endpoint.topic)
        stack.callback(collector.close)
        deployer = deployer_for(deploy_method, deploy_target)  # the session's method
        stack.callback(deployer.deploy, ServiceSpec(backend=service_backend))  # as the session deployed it
        uplinked = Uplinked(board, deployer, endpoint, collector, run_dir, say, service_backend)
    except HarnessError as exc:
        stack.close()
        yield str(exc)
        return
    with stack:
        yield uplinked
    after = _board_picture(board, deployed)
    changed = {k: (before[k], after[k]) for k in before if before[k] != after[k]}
    assert not changed, f"the resilience suite left {board.name} changed: {changed}"


@pytest.fixture
def uplinked(request: pytest.FixtureRequest, uplink_setup: Uplinked | str) -> Uplinked:
    if isinstance(uplink_setup, str):
        reported = request.config.stash.get(_UPLINK_REPORTED, False)
        request.config.stash[_UPLINK_REPORTED] = True
        if reported:
            pytest.skip("uplink unavailable (see the first resilience failure)")
        pytest.fail(f"uplink unavailable: {uplink_setup}", pytrace=False)
    return uplink_setup


_UPLINK_REPORTED = pytest.StashKey[bool]()


@pytest.fixture
def scale(request: pytest.FixtureRequest) -> float:
    return float(request.config.getoption("--outage-scale"))


@pytest.fixture
def record_case(request: pytest.FixtureRequest, record_testsuite_property) -> Callable[[str, str], None]:
    """A JUnit property of this case (on the testsuite, named after the test: xunit2 has no test properties)."""
    return lambda name, value: record_testsuite_property(f"{request.node.name}.{name}", value)


@pytest.fixture
def record(uplinked: Uplinked, results: ResultsWriter, row_context: RowContext, module_info: dict,
           record_case) -> Callable[[Outcome], None]:
    """The outcome's figures as rows of results.csv (what they cover: the case, its online or offline phase),
    and its verdict as JUnit properties and a progress line."""

    def write(outcome: Outcome) -> None:
        context = replace(row_context, precision=module_info["precision"], quantizer=module_info.get("quantizer"))
        verdict = outcome.verdict
        counts = {"expected": verdict.expected, "delivered": verdict.delivered, "missing": verdict.missing,
                  "duplicates": verdict.duplicates, "misordered": verdict.misordered,
                  "unexpected": verdict.unexpected, "dropped_overflow": verdict.dropped,
                  "module_dropped": verdict.module_dropped, "outbox_peak": outcome.outbox_peak}
        rows = [context.row(f"messages_{name}", value, "messages") for name, value in counts.items()]
        rows += [context.row("offline_s", outcome.offline_s, "s"), context.row("case_s", outcome.seconds, "s")]
        if outcome.drain_max_s is not None:
            rows.append(context.row("drain_s", outcome.drain_max_s, "s"))
        for phase, fps in (("online", outcome.fps_online), ("offline", outcome.fps_offline)):
            if fps is not None:
                rows.append(replace(context, phase=phase).row("module_fps", fps, "fps"))
        if outcome.fps_ratio is not None:
            rows.append(context.row("offline_fps_ratio", outcome.fps_ratio, "ratio"))
        results.write_all(rows)
        record_case("fault_method", outcome.method)
        record_case("verdict", verdict.describe())
        drains = ", ".join("-" if d is None else f"{d:.1f}" for d in outcome.drain_s)
        uplinked.say(f"{verdict.describe()}; drain {drains} s; FPS online {_fmt(outcome.fps_online)}, offline "
                     f"{_fmt(outcome.fps_offline)}; {outcome.seconds:.0f} s")

    return write


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"


def _assert_delivered(outcome: Outcome) -> None:
    assert outcome.verdict.passed, outcome.verdict.describe()


def _assert_kept_detecting(outcome: Outcome) -> None:
    ratio = outcome.fps_ratio
    assert ratio is not None, "no FPS figure for the link up or down: the module's /stats did not answer"
    assert ratio >= OFFLINE_FPS_SHARE, (f"the module detected at {outcome.fps_offline:.1f} FPS offline against "
                                        f"{outcome.fps_online:.1f} online ({ratio:.0%} < {OFFLINE_FPS_SHARE:.0%})")


@pytest.mark.parametrize("case", [name for name, _ in matrix(1.0)])
def test_outage_matrix(case: str, uplinked: Uplinked, scale: float, record) -> None:
    """Microsoft's connectivity matrix (offline / online / cycles), scaled."""
    plan = dict(matrix(scale))[case]
    uplinked.deploy(OUTBOX_MAX)
    outcome = uplinked.run(f"matrix-{case}", uplinked.cut(), plan)
    record(outcome)
    _assert_delivered(outcome)
    _assert_kept_detecting(outcome)


def test_flapping_link(uplinked: Uplinked, record) -> None:
    """1 s off, 1 s on, 20 times: reconnect churn must not lose, reorder or invent a message."""
    uplinked.deploy(OUTBOX_MAX)
    outcome = uplinked.run("flapping", uplinked.cut(), flapping())
    record(outcome)
    _assert_delivered(outcome)
    _assert_kept_detecting(outcome)


@pytest.mark.parametrize("crash", ["module_killed", "board_rebooted"])
def test_a_crash_during_an_outage(crash: str, uplinked: Uplinked, scale: float, record) -> None:
    """The module SIGKILLed (its supervisor restarts it) or the board rebooted (the module comes back by itself at
    boot) in the middle of an outage: what the module had queued survives in its outbox and is sent after."""
    uplinked.deploy(OUTBOX_MAX)
    action = OutageRun.kill_module if crash == "module_killed" else OutageRun.reboot_board
    outcome = uplinked.run(crash, uplinked.cut(), single_outage(scale), during=lambda case, _end: action(case))
    record(outcome)
    assert len(outcome.uplink["runs"]) >= 2, f"the module did not start again ({crash})"
    _assert_delivered(outcome)


def test_degraded_link(uplinked: Uplinked, scale: float, record, record_case) -> None:
    """Slow, jittery, narrow: netem where the board's kernel has it, else the relay on this host."""
    uplinked.deploy(OUTBOX_MAX)
    endpoint = uplinked.endpoint
    fault = DegradedLink(uplinked.board, endpoint.board_address, endpoint.port, DEGRADED, upstream=endpoint.local)
    outcome = uplinked.run("degraded", fault, single_outage(scale))
    if fault.why:
        record_case("netem_unavailable", fault.why)
        uplinked.say(f"degraded link made by the relay: {fault.why}")
    record(outcome)
    _assert_delivered(outcome)
    _assert_kept_detecting(outcome)


def test_outage_longer_than_the_outbox_holds(uplinked: Uplinked, record) -> None:
    """The outbox bounded to OVERFLOW_OUTBOX messages, an outage worth OVERFLOW_FACTOR times that: the oldest are
    dropped, every drop is on the module's record and matches its count, the outbox stays within its disk budget
    and the module keeps running."""
    handle = uplinked.deploy(OVERFLOW_OUTBOX)
    offline_s = OVERFLOW_FACTOR * OVERFLOW_OUTBOX / FPS_CAP
    peak_bytes: list[int] = []

    def watch_disk(case: OutageRun, end: float) -> None:
        case.wait_until(end - 1.0)  # the outbox at its fullest
        peak_bytes.append(int(handle.api("/uplink")["file_bytes"]))

    try:
        outcome = uplinked.run("outbox-overflow", uplinked.cut(), Cycles(offline_s, 4.0, 1, lead_s=3.0),
                               during=watch_disk)
    finally:
        uplinked.deploy(OUTBOX_MAX)
    record(outcome)
    _assert_delivered(outcome)
    assert outcome.verdict.dropped > 0, f"an outage of {offline_s:.0f} s at {FPS_CAP:g} FPS overflowed nothing"
    assert outcome.outbox_peak <= OVERFLOW_OUTBOX, f"outbox held {outcome.outbox_peak} > {OVERFLOW_OUTBOX}"
    budget = OVERFLOW_OUTBOX * OUTBOX_BYTES_PER_MESSAGE + WAL_BYTES
    assert peak_bytes and peak_bytes[0] <= budget, f"outbox took {peak_bytes} bytes, budget {budget}"
    assert handle.api("/health")["status"] == "running"
