"""Fixtures the suites share: the deployed module, the run's results file, power mode control, the gates.

Everything measured goes to ``<report-dir>/<run>/results.csv`` the moment it is measured, and
throughput also to ``benchmark.json`` (pytest-benchmark's format) at the end of the session.
Options are checked when pytest starts, before a board is leased: a wrong one is one line.
"""

from __future__ import annotations

import contextlib
import os
import re
import tempfile
import time
import warnings
from collections.abc import Iterator
from pathlib import Path

import pytest

from harness.board import Board
from harness.board.guard import PowerGuard
from harness.deploy import ModuleHandle, ServiceSpec
from harness.deploy.bundle import MODULE_DIR, module_bundle
from harness.deploy.methods import DEFAULT_METHOD, DEPLOYERS, DeployTarget, deployer_for
from harness.errors import ConfigError, HarnessError
from harness.gates import BaselineGate, GatePolicy, load_policy, resolve_baseline
from harness.gates.baseline import Baseline, is_date, named_run
from harness.golden import FixtureSet
from harness.history import HISTORY_FILE, History
from harness.lab import load_inventory, load_providers, provider_for
from harness.model_card import ModelCard, load_card
from harness.profiles import DeviceProfile, PowerMode, ThroughputFloor, all_profiles
from harness.pytest_plugin import board_lost, is_controller, leased_entry, name_run, selected_profile
from harness.results import BenchmarkFile, ResultsWriteError, ResultsWriter, Row, RowContext, read_modeled, verdict_row
from harness.telemetry.sources import DEFAULT_INTERVAL_MS, DEFAULT_SOURCE, SAMPLERS
from module.backends import PRECISIONS
from module.model import file_sha256

SUITES = Path(__file__).resolve().parent
RUN_DIR = pytest.StashKey[Path]()
RUN_ID = pytest.StashKey[str]()
POLICY = pytest.StashKey[GatePolicy]()
REPORT_FAILED = pytest.StashKey[str]()


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("jetson-hil suites")
    group.addoption("--duration", type=float, default=8.0, metavar="SECONDS",
                    help="measured time per phase (raw, pipeline) of each throughput test, over all rounds "
                         "(default: %(default)s)")
    group.addoption("--rounds", type=int, default=3, metavar="N",
                    help="rounds per throughput test, raw and pipeline alternating; figures are medians and "
                         "their spread feeds the baseline gate (default: %(default)s)")
    group.addoption("--telemetry-interval", type=int, default=None, metavar="MS",
                    help="telemetry sampling interval during measurements (default: 100 for tegrastats, 500 for "
                         "jtop, whose service spawns tools at every sample)")
    group.addoption("--telemetry", default=DEFAULT_SOURCE, choices=sorted(SAMPLERS),
                    help="what samples power, clocks and temperatures during measurements: tegrastats, or jtop "
                         "(jetson-stats' service, through its Python client on the board) (default: %(default)s)")
    group.addoption("--precision", default="all", metavar="PRECISIONS",
                    help="precisions to test, comma-separated, or 'all' the board's profile has (default: all)")
    group.addoption("--batch", default="profile", metavar="SIZES",
                    help="throughput batch sizes, comma-separated, or 'profile' (default: profile)")
    group.addoption("--baseline", default=None, metavar="latest|YYYY-MM-DD|RUN",
                    help="gate throughput against earlier figures of the same board and configuration: 'latest' "
                         "(per figure, the newest one of an earlier run whose test passed, in --report-dir or the "
                         "--history), a date (the same, measured on or before it), or one run (its folder, its "
                         "results.csv or its name)")
    group.addoption("--regression-config", type=Path, default=SUITES / "regression.yaml", metavar="YAML",
                    help="per-metric thresholds of the baseline gate (default: suites/regression.yaml)")
    group.addoption("--deploy", default=None, choices=sorted(DEPLOYERS),
                    help="how the module goes to the board: native (over SSH, a venv and a service), docker "
                         "(an image on the board's engine) or iothub (a deployment through the board's IoT Hub, "
                         "run by IoT Edge) (default: the board's `deploy:` in lab.yaml, else "
                         f"{DEFAULT_METHOD})")
    group.addoption("--module", type=Path, default=MODULE_DIR, metavar="DIR",
                    help="the module folder to deploy, e.g. a candidate build (default: the installed module/)")
    group.addoption("--fixtures-dir", type=Path, default=FixtureSet().root, metavar="DIR",
                    help="correctness fixtures: images, labels.json, golden/detections.json (default: fixtures/)")
    group.addoption("--run-id", default=None, help="name of this run's results folder (default: time and board)")
    group.addoption("--history", default=None, metavar="URL|FILE",
                    help="results history this run is added to at its end, and whose trend its report draws: a "
                         "SQLAlchemy URL (PostgreSQL for a farm) or a SQLite file "
                         "(default: <report-dir>/history.sqlite)")
    group.addoption("--outage-scale", type=float, default=1.0, metavar="SECONDS",
                    help="resilience durations: seconds per minute of Microsoft's IoT Edge outage matrix; 60 runs "
                         "its minutes, the default 1 runs seconds (default: %(default)s)")


def _listed(config: pytest.Config, option: str, allowed: tuple[str, ...] | None = None) -> list[str]:
    values = [v.strip() for v in str(config.getoption(option)).split(",") if v.strip()]
    if not values:
        raise pytest.UsageError(f"{option}: give at least one value")
    if allowed is not None and (unknown := [v for v in values if v not in allowed]):
        raise pytest.UsageError(f"{option}: unknown {', '.join(unknown)}; choose from {', '.join(allowed)}")
    return values


def pytest_configure(config: pytest.Config) -> None:
    """Every suite option, checked before anything is leased or deployed."""
    if config.getoption("--duration") <= 0:
        raise pytest.UsageError(f"--duration must be more than 0 seconds, got {config.getoption('--duration')}")
    if not config.getoption("--outage-scale") > 0:
        raise pytest.UsageError(f"--outage-scale must be more than 0 (seconds per minute of the outage matrix), got "
                                f"{config.getoption('--outage-scale')}")
    if config.getoption("--rounds") < 1:
        raise pytest.UsageError(f"--rounds must be at least 1, got {config.getoption('--rounds')}")
    if config.getoption("--precision") != "all":
        _listed(config, "--precision", PRECISIONS)
    if config.getoption("--batch") != "profile" and not all(v.isdigit() and int(v) > 0
                                                            for v in _listed(config, "--batch")):
        raise pytest.UsageError(f"--batch: expected 'profile' or positive integers, got {config.getoption('--batch')}")
    report_dir = Path(config.getoption("--report-dir"))
    try:
        report_dir.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=report_dir, prefix=".writable-"):
            pass
    except OSError as exc:
        raise pytest.UsageError(f"--report-dir {report_dir}: not a folder this user can write ({exc.strerror or exc})"
                                "; pass another one") from None
    try:
        config.stash[POLICY] = load_policy(config.getoption("--regression-config"))
        baseline = config.getoption("--baseline")
        if baseline and baseline != "latest" and not is_date(baseline):
            named_run(baseline, report_dir, history(config), config.stash[POLICY].metrics)
        module_bundle(config.getoption("--module"))
        FixtureSet(config.getoption("--fixtures-dir")).load_golden()
    except HarnessError as exc:
        raise pytest.UsageError(str(exc)) from None
    _check_selection(config)
    if is_controller(config) and config.getoption("--device"):
        # a farm run: one run folder that every worker (board) writes to, named here and handed to them
        selector = re.sub(r"[^A-Za-z0-9_.-]+", "-", config.getoption("--device")).strip("-")
        run = config.getoption("--run-id") or f"{time.strftime('%Y%m%dT%H%M%S')}-{selector}"
        config.stash[RUN_ID] = run
        config.stash[RUN_DIR] = report_dir / run


def history(config: pytest.Config) -> History:
    """--history, else the SQLite file in --report-dir: where this run is added and baselines are looked up."""
    return History(config.getoption("--history") or Path(config.getoption("--report-dir")) / HISTORY_FILE)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo) -> Iterator[None]:
    """A test that recorded rows gets its verdict as a row beside them (`test_passed`): the figures of a failed
    test are nobody's baseline."""
    outcome = yield
    report = outcome.get_result()
    funcargs = getattr(item, "funcargs", {})
    if report.when == "call" and not report.skipped and "results" in funcargs and "row_context" in funcargs:
        funcargs["results"].write(verdict_row(funcargs["row_context"], report.passed))


def _check_selection(config: pytest.Config) -> None:
    """Under CI, a run that would select no board is a usage error: it would skip every test and pass a night that
    ran nothing. Interactively the tests skip, as without a board any pytest run does (with a hint)."""
    if os.environ.get("CI", "").lower() not in ("true", "1") or config.option.help:
        return
    selector = config.getoption("--device")
    if not selector:
        raise pytest.UsageError("CI=true and no --device: the suites would skip every test and pass having run "
                                "nothing; pass --device NAME|PROFILE|tag:X|virtual:PROFILE (see `hil devices`)")
    load_providers()  # the plugin's own pytest_configure may not have run yet: virtual:PROFILE is a provider's
    if provider_for(selector) is None:
        try:
            load_inventory(config.getoption("--lab")).select(selector, all_profiles())
        except HarnessError as exc:
            raise pytest.UsageError(f"CI=true: {exc}") from None


def pytest_report_header(config: pytest.Config) -> str | None:
    if not config.getoption("--device"):
        return ("jetson-hil: no --device: every suite test skips; pass --device NAME|PROFILE|tag:X|virtual:PROFILE "
                "(see `hil devices`)")
    return None


@pytest.hookimpl(optionalhook=True)
def pytest_configure_node(node) -> None:
    """xdist: each worker writes to the run folder the controller named."""
    if RUN_ID in node.config.stash:
        node.workerinput["jetson_hil_run_id"] = node.config.stash[RUN_ID]


@pytest.hookimpl(trylast=True)
def pytest_sessionstart(session: pytest.Session) -> None:
    """--power-mode against the leased board's profile (known once it is leased), before any test runs."""
    profile = selected_profile(session.config)
    if profile is None:
        return
    try:
        if not power_modes(session.config, profile):
            raise ConfigError("--power-mode", "", "no power mode given; use ids or names, default, max or all")
    except HarnessError as exc:
        pytest.exit(f"jetson-hil: {exc}", returncode=pytest.ExitCode.USAGE_ERROR)


def precisions(config: pytest.Config, profile: DeviceProfile) -> list[str]:
    """--precision: the profile's precisions, or those of them asked for."""
    wanted = config.getoption("--precision")
    return [p for p in profile.precisions if wanted == "all" or p in _listed(config, "--precision")]


def batch_sizes(config: pytest.Config, profile: DeviceProfile) -> list[int]:
    wanted = config.getoption("--batch")
    return list(profile.batch_sizes) if wanted == "profile" else [int(v) for v in _listed(config, "--batch")]


def power_modes(config: pytest.Config, profile: DeviceProfile) -> list[PowerMode]:
    """--power-mode: comma-separated ids or names, 'default', 'max' or 'all'."""
    wanted = config.getoption("--power-mode")
    if wanted.strip() == "all":
        return list(profile.power_modes)
    modes: list[PowerMode] = []
    for key in (k.strip() for k in wanted.split(",") if k.strip()):
        mode = profile.default_mode if key == "default" else profile.max_mode if key == "max" else profile.mode(key)
        if mode not in modes:
            modes.append(mode)
    return modes


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Throughput tests run per power mode, batch size and precision of the selected board's profile;
    correctness per precision."""
    try:
        profile = selected_profile(metafunc.config)
    except HarnessError:  # the board fixture reports it, once, with the reason
        profile = None
    if "power_mode" in metafunc.fixturenames:
        if profile is None:
            metafunc.parametrize(("power_mode", "batch", "precision"), [pytest.param(None, 1, "fp32", id="no-board")])
            return
        cases = [(m, b, p) for m in power_modes(metafunc.config, profile) for b in batch_sizes(metafunc.config, profile)
                 for p in precisions(metafunc.config, profile)]
        metafunc.parametrize(("power_mode", "batch", "precision"), cases,
                             ids=[f"{m.name}-b{b}-{p}" for m, b, p in cases])
    elif "precision" in metafunc.fixturenames:
        wanted = precisions(metafunc.config, profile) if profile else list(PRECISIONS)
        metafunc.parametrize("precision", wanted, scope="module")


@pytest.fixture(scope="session")
def run_id(request: pytest.FixtureRequest, board: Board) -> str:
    """--run-id, the farm run's (every board of a `-n` run writes to one folder), else time and board."""
    handed = getattr(request.config, "workerinput", {}).get("jetson_hil_run_id")
    run = handed or request.config.getoption("--run-id") or f"{time.strftime('%Y%m%dT%H%M%S')}-{board.name}"
    name_run(request.config, run)
    return run


@pytest.fixture(scope="session")
def run_dir(request: pytest.FixtureRequest, report_dir: Path, run_id: str) -> Path:
    path = report_dir / run_id
    path.mkdir(parents=True, exist_ok=True)
    request.config.stash[RUN_DIR] = path
    return path


@pytest.hookimpl(tryfirst=True)
def pytest_sessionfinish(session: pytest.Session) -> None:
    """The run goes into the results history, and its report (report.html, .md, .json) is written from what it
    recorded, also after failures; against the same baseline as the throughput gate when one was given, with the
    history's trend. Neither can crash the run: what fails is one line in the summary."""
    config = session.config
    path = config.stash.get(RUN_DIR, None)
    entry = leased_entry(config)
    lost = board_lost(config)
    if path is not None and entry is not None and lost is not None:
        with contextlib.suppress(HarnessError), ResultsWriter(path / "results.csv") as writer:
            writer.write(RowContext(run=path.name, board=entry.name, profile=entry.profile, suite="session",
                                    test="board_lost").row("board_lost", 1, "event"))
    if hasattr(config, "workerinput") or path is None or not (path / "results.csv").is_file():
        return  # a farm worker: the controller reports the whole run
    from harness.report import build, load_run, trend, write

    problems = []
    xmlpath = config.getoption("xmlpath", None)
    try:
        run = load_run(path, Path(xmlpath) if xmlpath else None)
    except HarnessError as exc:
        config.stash[REPORT_FAILED] = f"no report: {exc}"
        return
    past = baseline = None
    boards = sorted({row.board for row in run.rows})
    try:
        runs = history(config)
        runs.import_run(run)
        past = runs.figures(boards, trend.WANTED)
        spec = config.getoption("--baseline")
        if spec:
            baseline = resolve_baseline(spec, Path(config.getoption("--report-dir")), boards=boards,
                                        metrics=config.stash[POLICY].metrics, exclude={run.name}, history=runs)
    except (HarnessError, OSError) as exc:
        problems.append(f"the history: {exc}")
    try:
        write(build([run], config.stash[POLICY], baseline, past), path)
    except (HarnessError, OSError, ValueError) as exc:
        problems.append(f"no report: {exc}")
    if problems:
        config.stash[REPORT_FAILED] = "; ".join(problems)


def pytest_terminal_summary(terminalreporter, config: pytest.Config) -> None:
    """Say where this run's results and report are, also after failures (rows are written as they are measured)."""
    path = config.stash.get(RUN_DIR, None)
    if path is not None:
        terminalreporter.write_sep("-", "jetson-hil results")
        for name in ("results.csv", "benchmark.json", "report.html", "report.md", "report.json"):
            if (path / name).is_file():
                terminalreporter.write_line(f"{name}: {path / name}")
        if REPORT_FAILED in config.stash:
            terminalreporter.write_line(f"jetson-hil: {config.stash[REPORT_FAILED]}")


class _RunStopsOnWriteFailure(ResultsWriter):
    """A row that cannot be written (disk full) stops the whole run with one line naming the file."""

    def write(self, row: Row) -> None:
        try:
            super().write(row)
        except ResultsWriteError as exc:
            pytest.exit(f"jetson-hil: {exc}: the run stops here", returncode=3)


@pytest.fixture(scope="session")
def results(run_dir: Path) -> Iterator[ResultsWriter]:
    try:
        writer = _RunStopsOnWriteFailure(run_dir / "results.csv")
    except ResultsWriteError as exc:
        pytest.exit(f"jetson-hil: {exc}", returncode=3)
    with writer:
        yield writer


@pytest.fixture(scope="session")
def modeled(board: Board) -> frozenset[str]:
    """Quantities this board models instead of measuring (a virtual board's power, for example)."""
    try:
        return read_modeled(board)
    except HarnessError as exc:
        pytest.fail(str(exc), pytrace=False)


@pytest.fixture(scope="session")
def benchmarks(run_dir: Path, board: Board) -> BenchmarkFile:
    """pytest-benchmark entries, benchmark.json rewritten whole at each (a killed run leaves it complete)."""
    return BenchmarkFile(run_dir / "benchmark.json", board.name, board.profile.name)


@pytest.fixture(scope="session")
def module_dir(request: pytest.FixtureRequest) -> Path:
    """The module folder this session deploys (--module)."""
    return request.config.getoption("--module")


@pytest.fixture(scope="session")
def fixture_set(request: pytest.FixtureRequest) -> FixtureSet:
    return FixtureSet(request.config.getoption("--fixtures-dir"))


@pytest.fixture(scope="session")
def telemetry_source(request: pytest.FixtureRequest) -> str:
    """--telemetry: the sampler of every measurement's telemetry window."""
    return request.config.getoption("--telemetry")


@pytest.fixture(scope="session")
def telemetry_interval_ms(request: pytest.FixtureRequest, telemetry_source: str) -> int:
    """--telemetry-interval, else the source's default."""
    return request.config.getoption("--telemetry-interval") or DEFAULT_INTERVAL_MS[telemetry_source]


@pytest.fixture(scope="session")
def deploy_method(request: pytest.FixtureRequest) -> str:
    """--deploy, else the leased board's `deploy:` in lab.yaml, else the default."""
    entry = leased_entry(request.config)
    return request.config.getoption("--deploy") or (entry.deploy if entry else None) or DEFAULT_METHOD


@pytest.fixture(scope="session")
def deploy_target(request: pytest.FixtureRequest, board: Board, module_dir: Path, run_dir: Path) -> DeployTarget:
    """What the session's deployers deploy to: the board, with its lab.yaml settings, and the run folder."""
    entry = leased_entry(request.config)
    return DeployTarget(board, module_dir, entry.iothub if entry else None, run_dir)


@pytest.fixture(scope="session")
def service_backend(request: pytest.FixtureRequest) -> str | None:
    """--backend: the module's backend in every deploy of this session (None: the board's `backend:`, else auto)."""
    return request.config.getoption("--backend")


@pytest.fixture(scope="session")
def deployed(deploy_target: DeployTarget, deploy_method: str, service_backend: str | None,
             record_testsuite_property) -> Iterator[ModuleHandle]:
    """The module deployed (by the session's deploy method, with the session's backend) and running; stopped at the
    end of the session."""
    board = deploy_target.board
    record_testsuite_property("deploy_method", deploy_method)
    try:
        handle = deployer_for(deploy_method, deploy_target).deploy(ServiceSpec(backend=service_backend))
    except HarnessError as exc:
        pytest.fail(f"deploying the module to {board.name} ({deploy_method}) failed: {exc}", pytrace=False)
    info = handle.api("/info")
    record_testsuite_property("model_sha256", info["model_sha256"])
    record_testsuite_property("module_backend", f"{info['backend']} ({info['device']})")
    for name, version in info.get("versions", {}).items():
        record_testsuite_property(name, version)
    record_testsuite_property("deploy_seconds", str(handle.report.seconds))
    try:
        yield handle
    finally:
        handle.stop()


@pytest.fixture(scope="session")
def power_guard(board: Board) -> PowerGuard:
    """Power mode and clocks for the measurements; the board's state restores them at the end of the session,
    and its watchdog does if the harness dies."""
    return PowerGuard(board)


@pytest.fixture
def row_context(request: pytest.FixtureRequest, run_id: str, board: Board, module_info: dict) -> RowContext:
    return RowContext(run=run_id, board=board.name, profile=board.profile.name,
                      suite=Path(str(request.node.path)).stem, test=request.node.name,
                      backend=module_info["backend"], device=module_info["device"])


@pytest.fixture(scope="session")
def module_info(deployed: ModuleHandle) -> dict:
    return deployed.api("/info")


@pytest.fixture(scope="session")
def local_model(module_dir: Path, module_info: dict) -> Path:
    """The deployed model's file in the module folder on this host (the board reports its own path)."""
    return module_dir / "models" / Path(module_info["model"]).name


@pytest.fixture(scope="session")
def reference_model_sha(local_model: Path) -> str:
    return file_sha256(local_model)


@pytest.fixture(scope="session")
def model_card(local_model: Path) -> ModelCard:
    try:
        return load_card(local_model)
    except HarnessError as exc:
        pytest.fail(f"the model card is the correctness reference: {exc}", pytrace=False)


@pytest.fixture(scope="session")
def floors(request: pytest.FixtureRequest, board: Board) -> list[ThroughputFloor]:
    """The board's floors: its profile's `throughput_floors`, then lab.yaml's `floors:` for its name or profile."""
    entry = leased_entry(request.config)
    try:
        lab = load_inventory(request.config.getoption("--lab"))
    except HarnessError as exc:
        pytest.fail(f"the lab's floors: {exc}", pytrace=False)
    return [*board.profile.throughput_floors, *(lab.floors_for(entry) if entry is not None else [])]


@pytest.fixture(scope="session")
def baseline_gate(request: pytest.FixtureRequest, report_dir: Path, run_id: str, board: Board) -> BaselineGate | None:
    """The baseline of --baseline, from --report-dir and the history, or None without one. A board with no earlier
    passing figure is a first run (said once); a history that cannot be read fails the board's throughput tests."""
    spec = request.config.getoption("--baseline")
    if not spec:
        return None
    policy = request.config.stash[POLICY]
    try:
        found: Baseline | str = resolve_baseline(spec, report_dir, boards={board.name}, metrics=policy.metrics,
                                                 exclude={run_id}, history=history(request.config))
    except HarnessError as exc:
        found = str(exc)
    if isinstance(found, str):  # failed outside the except: one line, not a chain of two
        pytest.fail(f"--baseline {spec}: the baseline of {board.name} cannot be read: {found}", pytrace=False)
    if not found.rows:
        warnings.warn(f"--baseline {spec}: {found.missing[board.name]}", pytest.PytestWarning, stacklevel=1)
        return None
    return BaselineGate(policy, found)
